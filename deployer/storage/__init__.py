"""Storage stacks: plan (pure data: model, planner, describe) and apply (disks, md, LUKS, LVM, btrfs, mkfs)."""

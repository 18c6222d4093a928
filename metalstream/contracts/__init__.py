"""The contracts between metalstream's components: the one place each format and each field rule is written.

- `formats`: the document formats' names and major versions, and the check every reader applies.
- `rules`: field rules shared by the API, the agent, the builder and the kickstart front end
  (sha256, image and file names, host names, crypt(3) hashes, SSH public keys, kernel arguments,
  MACs, boot modes, phases, deployment states, bounded numbers and text).
- `manifests`: the image manifest and the installer manifest, each with a writer and a reader.
- `deployspec`: what a kickstart says about one machine (disks, bootloader, network, keys).
- `secureboot`: which packages make each family's signed boot chain, and why an image cannot boot under
  Secure Boot.
- `plan`: the deploy plan the service hands the agent, with a writer and a reader.
- `events`: the agent's progress events and final result, with writers and readers.

Standard library only: the installer ships these modules with the agent. docs/contracts.md explains them.
"""

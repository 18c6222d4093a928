"""metalstream tarball builder: kickstart in, reproducible OS image (tar.zst + manifest) out."""

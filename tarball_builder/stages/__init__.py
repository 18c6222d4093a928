"""Build stages, one small module each; tarball_builder.pipeline puts them in order.

install → configure → accounts → post → initramfs → cleanup → pack → manifest
"""

"""Test beds: the veth lab and the QEMU virtio_net lab (vlab)."""

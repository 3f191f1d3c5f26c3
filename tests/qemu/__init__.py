"""Tests that boot real QEMU guests with the real SPICE agent and live-migrate them."""

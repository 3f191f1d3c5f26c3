"""libvirt-managed VMs: a domain's agent channel as a stream, its migrations as events.

``api`` (libvirt-python, its asyncio event loop, connections, channels), ``stream`` (the
channel as a Transport), ``follower`` (events as switchover facts), ``discovery`` (listing
hosts' domains; the start-up checks). libvirt-python is optional: importing this package
does not need it, calling into it does (``api.load``).
"""

from __future__ import annotations

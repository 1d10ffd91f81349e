"""scnode_lab: Debian trixie test hosts (systemd-nspawn in network namespaces) on one machine.

`python -m scnode_lab image|up|down|status` — see scnode_lab/README.md and TESTHOSTS.md.
"""

__version__ = "0.1.0"

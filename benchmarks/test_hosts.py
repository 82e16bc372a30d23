"""Two test hosts for the comparison scripts: network namespaces joined by a veth pair,
addressed in 198.18.0.0/15 (DESIGN.md, "Test hosts"). Everything made is removed on exit,
also on error or interrupt."""

import os
import subprocess


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


class TestHosts:
    def __init__(self, tag="bench"):
        self.id = os.getpid() % 200 + 20
        self.names = [f"halo-{tag}-{os.getpid()}-a", f"halo-{tag}-{os.getpid()}-b"]
        self.devs = [f"hb{os.getpid() % 100000}a", f"hb{os.getpid() % 100000}b"]
        self.addrs = [f"198.18.{self.id}.1", f"198.18.{self.id}.2"]
        self.made = []

    interface = "eth0"

    def __enter__(self):
        try:
            for n in self.names:
                _ip("netns", "add", n)
                self.made.append(n)
                _ip("-n", n, "link", "set", "lo", "up")
            _ip("link", "add", self.devs[0], "type", "veth", "peer", "name", self.devs[1])
            for n, dev, addr in zip(self.names, self.devs, self.addrs):
                _ip("link", "set", dev, "netns", n)
                # Named eth0 inside the host: nsenter keeps the machine's /sys, where UCX looks
                # devices up by name, and eth0 exists there.
                _ip("-n", n, "link", "set", dev, "name", self.interface)
                _ip("-n", n, "addr", "add", f"{addr}/24", "dev", self.interface)
                _ip("-n", n, "link", "set", self.interface, "up")
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for n in self.made:
            _ip("netns", "delete", n, check=False)  # Deleting a namespace removes its veth end.
        self.made = []

    def prefix(self, i):
        """Command prefix that runs a program inside host i (nsenter keeps /sys as it is)."""
        return ["nsenter", f"--net=/run/netns/{self.names[i]}"]

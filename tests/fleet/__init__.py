"""The sshd test fleet: real target hosts on loopback addresses (see harness.py)."""

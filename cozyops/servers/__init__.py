"""Servers: provisioning with Ansible (ansible-runner); the library part of `cozyops server`."""

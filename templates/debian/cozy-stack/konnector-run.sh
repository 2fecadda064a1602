#!/bin/sh
# konnectors.cmd of the lab's cozy-stack package: the double runs no konnectors.
echo "cozy-stack (cozyops lab double): konnectors are not run in the lab" >&2
exit 1

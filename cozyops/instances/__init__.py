"""Instances: their place in instances.yml, their placement on servers, their life on a server
(created, changed, removed through cozy-stack's admin API), their nginx site, and what a fleet
owns on a shared server.

The library API other orchestrators build on (moves, `cozyops install`, the fleet's apply):

- :mod:`cozyops.instances.fleetfile`: ``add``, ``remove``, ``update`` entries of instances.yml
  (ruamel.yaml's round trip: comments and order kept);
- :mod:`cozyops.instances.placement`: ``place`` (the server with the most room);
- :mod:`cozyops.instances.lifecycle`: ``create``, ``destroy``, ``modify``, ``observe`` on one
  server's cozy-stack (a :class:`~cozyops.stack.connect.StackClients`);
- :mod:`cozyops.instances.site`: ``render`` an instance's nginx site, ``deploy``/``remove`` it;
- :mod:`cozyops.instances.owned`: the fleet's ownership records.
"""

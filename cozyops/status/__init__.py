"""The fleet's status: collected from its servers, store, zone and runs; rendered as JSON, an HTML
page and node_exporter textfile metrics (`cozyops status`, docs/status.md)."""

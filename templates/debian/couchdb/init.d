#!/bin/sh
### BEGIN INIT INFO
# Provides:          couchdb
# Required-Start:    $remote_fs $network
# Required-Stop:     $remote_fs $network
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: CouchDB API (pouchdb-server, cozyops lab)
### END INIT INFO
# The lab's couchdb package: pouchdb-server on the bind address of
# /opt/couchdb/etc/local.d/10-bind-address.ini, port 5984, data in /var/lib/couchdb.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
NAME=couchdb
NODE=/usr/bin/node
SERVER=/opt/couchdb/pouchdb-server/node_modules/pouchdb-server/bin/pouchdb-server
DATA=/var/lib/couchdb
PIDFILE=/run/couchdb.pid
LOG=/var/log/couchdb/couchdb.log
BIND=$(sed -n 's/^bind_address *= *//p' /opt/couchdb/etc/local.d/10-bind-address.ini 2>/dev/null)

. /lib/lsb/init-functions

case "$1" in
  start)
    log_daemon_msg "Starting CouchDB API (pouchdb-server)" "$NAME"
    rm -f "$DATA/config.json"
    start-stop-daemon --start --quiet --oknodo --background --make-pidfile --pidfile "$PIDFILE" \
      --chuid couchdb:couchdb --chdir "$DATA" --output "$LOG" --exec "$NODE" -- \
      "$SERVER" --host "${BIND:-127.0.0.1}" --port 5984 --dir "$DATA/db" --config "$DATA/config.json"
    log_end_msg $?
    ;;
  stop)
    log_daemon_msg "Stopping CouchDB API (pouchdb-server)" "$NAME"
    start-stop-daemon --stop --quiet --oknodo --pidfile "$PIDFILE" --remove-pidfile --retry TERM/10/KILL/5
    log_end_msg $?
    ;;
  restart|force-reload|reload)
    "$0" stop
    "$0" start
    ;;
  status)
    status_of_proc -p "$PIDFILE" "$NODE" "$NAME" && exit 0 || exit $?
    ;;
  *)
    echo "Usage: /etc/init.d/couchdb {start|stop|restart|status}" >&2
    exit 3
    ;;
esac
exit 0

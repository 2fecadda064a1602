#!/bin/sh
### BEGIN INIT INFO
# Provides:          cozy-stack
# Required-Start:    $remote_fs $network
# Required-Stop:     $remote_fs $network
# Should-Start:      couchdb
# Should-Stop:       couchdb
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: Cozy service
### END INIT INFO
# The lab's cozy-stack package (cozyops): what cozy-stack's systemd unit does (User=cozy-stack,
# Group=cozy, WorkingDirectory=/var/lib/cozy/, ExecStart=/usr/bin/cozy-stack serve), as an init
# script for hosts without systemd.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
NAME=cozy-stack
DAEMON=/usr/bin/cozy-stack
PIDFILE=/run/cozy-stack.pid
LOG=/var/log/cozy/stack.log

. /lib/lsb/init-functions

case "$1" in
  start)
    log_daemon_msg "Starting Cozy service" "$NAME"
    start-stop-daemon --start --quiet --oknodo --background --make-pidfile --pidfile "$PIDFILE" \
      --chuid cozy-stack:cozy --chdir /var/lib/cozy --output "$LOG" \
      --startas "$DAEMON" -- serve
    log_end_msg $?
    ;;
  stop)
    log_daemon_msg "Stopping Cozy service" "$NAME"
    start-stop-daemon --stop --quiet --oknodo --pidfile "$PIDFILE" --remove-pidfile --retry TERM/10/KILL/5
    log_end_msg $?
    ;;
  restart|force-reload|reload)
    "$0" stop
    "$0" start
    ;;
  status)
    status_of_proc -p "$PIDFILE" "$DAEMON" "$NAME" && exit 0 || exit $?
    ;;
  *)
    echo "Usage: /etc/init.d/cozy-stack {start|stop|restart|status}" >&2
    exit 3
    ;;
esac
exit 0

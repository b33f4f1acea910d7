# $1 is 0 on erase (not on upgrade): stop the service.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now lwgate.service || :
fi

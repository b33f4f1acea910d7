if [ -d /run/systemd/system ]; then systemctl daemon-reload || :; fi
# $1 is 0 on erase (not on upgrade). rpm has removed the directories it owns when
# they were empty; systemd-tmpfiles may have made them again since (objects/ is
# created by tmpfiles.d too): remove them when empty, keep anything an operator put
# there (rmdir fails on a non-empty directory). State in /var/lib/lwgate is kept.
if [ "$1" -eq 0 ]; then
    rmdir /etc/lwgate/objects /etc/lwgate/devices.d 2>/dev/null || :
    rmdir /etc/lwgate 2>/dev/null || :
fi

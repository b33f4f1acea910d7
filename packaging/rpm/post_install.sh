# Same as the deb: account and directories, no start until configured.
systemd-sysusers /usr/lib/sysusers.d/lwgate.conf || :
systemd-tmpfiles --create /usr/lib/tmpfiles.d/lwgate.conf || :
chgrp lwgate /etc/lwgate /etc/lwgate/lwgate.toml || :
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    # $1 is 2 or more on upgrade: restart a running service.
    if [ "$1" -ge 2 ]; then systemctl try-restart lwgate.service || :; fi
fi
if [ "$1" -eq 1 ]; then
    echo "lwgate installed. Edit /etc/lwgate/lwgate.toml, check it with 'lwgate check-config',"
    echo "then start it with 'systemctl enable --now lwgate'."
fi

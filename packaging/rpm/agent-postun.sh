# swarmguard-agent %postun: reload systemd; restart swarmd after an upgrade. rpm has no
# purge: /var/lib/swarmguard/agent stays after an erase (remove it by hand if wanted).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$1" -ge 1 ]; then
        systemctl try-restart swarmd.service || :
    fi
fi

# swarmguard-identity %postun: reload systemd; restart identityd after an upgrade. rpm has no
# purge: /var/lib/swarmguard/identity, with the issuer key, stays after an erase.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$1" -ge 1 ]; then
        systemctl try-restart identityd.service || :
    fi
fi

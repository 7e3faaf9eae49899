# swarmguard-identity %post: user, directories, enable and start identityd on first install.
# (cargo-generate-rpm does not expand rpm macros, so the systemd steps are spelled out.)
systemd-sysusers /usr/lib/sysusers.d/swarmguard-identity.conf
systemd-tmpfiles --create /usr/lib/tmpfiles.d/swarmguard-identity.conf
chown root:swarmguard /etc/swarmguard/identity.toml
chmod 0640 /etc/swarmguard/identity.toml
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$1" -eq 1 ]; then
        systemctl enable --now identityd.service || :
    fi
fi

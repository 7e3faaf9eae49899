# swarmguard-agent %post: user, directories, enable and start swarmd on first install.
# (cargo-generate-rpm does not expand rpm macros, so the systemd steps are spelled out.)
systemd-sysusers /usr/lib/sysusers.d/swarmguard-agent.conf
systemd-tmpfiles --create /usr/lib/tmpfiles.d/swarmguard-agent.conf
chown root:swarmguard /etc/swarmguard/agent.toml
chmod 0640 /etc/swarmguard/agent.toml
chown -R root:swarmguard /etc/swarmguard/rules.d /etc/swarmguard/scenarios.d /etc/swarmguard/domains.d
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$1" -eq 1 ]; then
        systemctl enable --now swarmd.service || :
    fi
fi

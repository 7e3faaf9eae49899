# swarmguard-agent %preun: stop and disable swarmd when the package is erased (not upgraded).
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now swarmd.service || :
fi

# swarmguard-identity %preun: stop and disable identityd when the package is erased (not upgraded).
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now identityd.service || :
fi

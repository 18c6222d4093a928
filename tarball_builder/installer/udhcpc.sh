#!/bin/sh
# udhcpc event script for the metalstream installer: apply the lease with iproute2.
# udhcpc passes the event as $1 and the lease in the environment: interface, ip, mask (prefix
# length), router, dns, domain, hostname.
case "$1" in
    deconfig)
        ip link set "$interface" up
        ip -4 address flush dev "$interface"
        ;;
    bound|renew)
        ip -4 address flush dev "$interface"
        ip address add "$ip/${mask:-24}" dev "$interface"
        metric=$(ip -o link show dev "$interface" | cut -d: -f1)  # the ifindex: one route per NIC
        for gateway in $router; do
            ip route replace default via "$gateway" dev "$interface" metric "$metric"
            break
        done
        if [ -n "$dns" ]; then
            rm -f /etc/resolv.conf
            {
                [ -n "$domain" ] && echo "search $domain"
                for server in $dns; do echo "nameserver $server"; done
            } > /etc/resolv.conf
        fi
        [ -n "$hostname" ] && hostname "$hostname"
        echo "metalstream-init: $interface: $ip/${mask:-24} via ${router:-no router}"
        ;;
esac
exit 0

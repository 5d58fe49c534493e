package safefetch

import (
	"net/netip"
	"strconv"
	"strings"
)

// blockedPrefixes are the ranges a fetch may never reach: everything that is
// not plain public unicast. IPv4-mapped addresses are unmapped and NAT64
// addresses have their embedded IPv4 checked before this list is consulted.
var blockedPrefixes = mustPrefixes(
	// IPv4 (RFC 6890 special-purpose registry and friends).
	"0.0.0.0/8",       // "this network", unspecified
	"10.0.0.0/8",      // private
	"100.64.0.0/10",   // CGNAT shared address space
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local, incl. cloud metadata 169.254.169.254
	"172.16.0.0/12",   // private
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // TEST-NET-1
	"192.31.196.0/24", // AS112
	"192.52.193.0/24", // AMT
	"192.88.99.0/24",  // 6to4 relay anycast
	"192.168.0.0/16",  // private
	"192.175.48.0/24", // AS112 direct delegation
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // TEST-NET-2
	"203.0.113.0/24",  // TEST-NET-3
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, incl. broadcast 255.255.255.255
	"::/8",            // unspecified, loopback, IPv4-compatible, reserved
	"64:ff9b:1::/48",  // local-use NAT64 (RFC 8215)
	"100::/64",        // discard-only
	"2001::/23",       // IETF protocol assignments (Teredo, ORCHID, ...)
	"2001:db8::/32",   // documentation
	"2002::/16",       // 6to4: embeds arbitrary IPv4
	"3fff::/20",       // documentation (RFC 9637)
	"5f00::/16",       // SRv6 SIDs
	"fc00::/7",        // unique local (ULA)
	"fe80::/10",       // link-local
	"fec0::/10",       // site-local (deprecated)
	"ff00::/8",        // multicast
)

// nat64 is the well-known NAT64 prefix (RFC 6052); its last 32 bits are an IPv4 address.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// Blocked reports whether a may not be fetched from: loopback, private,
// link-local, CGNAT, multicast, unspecified, ULA, documentation and other
// special ranges, also when written as IPv4-mapped IPv6 or NAT64.
func Blocked(a netip.Addr) bool {
	if !a.IsValid() || a.Zone() != "" {
		return true
	}
	a = a.Unmap()
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		return Blocked(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	if !a.IsGlobalUnicast() || a.IsPrivate() {
		return true
	}
	for _, p := range blockedPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// numericHost reports whether host is written like an IPv4 address in a
// form browsers and inet_aton accept but netip does not: decimal
// (2130706433), octal (0177.0.0.1), hex (0x7f.1) or short (127.1). The WHATWG
// URL standard parses any host whose last label is a number as IPv4.
func numericHost(host string) bool {
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	last := labels[len(labels)-1]
	if last == "" {
		return false
	}
	l := strings.ToLower(last)
	if strings.HasPrefix(l, "0x") {
		_, err := strconv.ParseUint(l[2:], 16, 64)
		return err == nil || l == "0x"
	}
	for _, r := range l {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

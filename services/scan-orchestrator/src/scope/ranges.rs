//! The ranges the scope decides on before any configured rule: what is never scanned, and
//! what is special-purpose (scanned only when an allow rule names it).
//!
//! Each entry carries its source, so that a reviewer can check it and an operator who meets a
//! refusal can see why. The Helm chart keeps the same lists for the scan-orchestrator's
//! NetworkPolicy (`deploy/helm/phantom/templates/_scope.tpl`); a test fails when the two
//! drift apart.

/// One listed range: what it is and where that is documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// The range, as a CIDR block (a single address is a `/32` or a `/128`).
    pub cidr: &'static str,
    /// What lives there, for the refusal message.
    pub what: &'static str,
    /// Where that is documented.
    pub source: &'static str,
}

const fn listed(cidr: &'static str, what: &'static str, source: &'static str) -> Listed {
    Listed { cidr, what, source }
}

/// Cloud platform endpoints: each instance reaches its provider's metadata, credentials, DNS
/// or time service there, usually without authentication. A scanner that can be pointed at
/// them hands the instance's credentials to whoever writes the target list, so they are never
/// scanned, whatever the configuration says. Most are in link-local space (refused anyway);
/// they are listed one by one so that a refusal names the service. The IPv6 twins are in
/// unique-local space (`fc00::/7`), which the default scope allows, and two IPv4 ones are
/// outside link-local altogether (Azure's is a public address, Alibaba's is in `100.64.0.0/10`).
pub const PLATFORM_ENDPOINTS: &[Listed] = &[
    // The instance metadata service of AWS, Google Cloud, Azure, Oracle Cloud, DigitalOcean,
    // Akamai (Linode), Hetzner and OpenStack: credentials of the instance's role among others.
    listed(
        "169.254.169.254/32",
        "cloud instance metadata (AWS, Google Cloud, Azure, Oracle Cloud, DigitalOcean, Akamai, OpenStack)",
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html",
    ),
    // AWS IMDS over IPv6 (Nitro instances).
    listed(
        "fd00:ec2::254/128",
        "AWS instance metadata over IPv6",
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html",
    ),
    // The task metadata and task-role credentials endpoint of Amazon ECS.
    listed(
        "169.254.170.2/32",
        "Amazon ECS task metadata and credentials",
        "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html",
    ),
    // The EKS Pod Identity Agent hands pods their IAM credentials.
    listed(
        "169.254.170.23/32",
        "Amazon EKS Pod Identity Agent (pod credentials)",
        "https://docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html",
    ),
    listed(
        "fd00:ec2::23/128",
        "Amazon EKS Pod Identity Agent (pod credentials) over IPv6",
        "https://docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html",
    ),
    // The VPC's DNS resolver (Route 53 Resolver), reachable from every instance.
    listed(
        "169.254.169.253/32",
        "Amazon VPC DNS resolver",
        "https://docs.aws.amazon.com/vpc/latest/userguide/AmazonDNS-concepts.html",
    ),
    listed(
        "fd00:ec2::253/128",
        "Amazon VPC DNS resolver over IPv6",
        "https://docs.aws.amazon.com/vpc/latest/userguide/AmazonDNS-concepts.html",
    ),
    // Amazon Time Sync Service.
    listed(
        "169.254.169.123/32",
        "Amazon Time Sync Service",
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/set-time.html",
    ),
    listed(
        "fd00:ec2::123/128",
        "Amazon Time Sync Service over IPv6",
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/set-time.html",
    ),
    // Google Cloud's metadata server as IPv6-only instances reach it.
    listed(
        "fd20:ce::254/128",
        "Google Cloud metadata server over IPv6",
        "https://cloud.google.com/compute/docs/metadata/querying-metadata",
    ),
    // Azure's WireServer: the VM agent's channel to the host (extensions, certificates, health)
    // and the default DNS resolver. A public address, so only this list refuses it.
    listed(
        "168.63.129.16/32",
        "Azure WireServer (VM agent channel, DNS)",
        "https://learn.microsoft.com/en-us/azure/virtual-network/what-is-ip-address-168-63-129-16",
    ),
    // Alibaba Cloud ECS's metadata service, inside the shared address space 100.64.0.0/10.
    listed(
        "100.100.100.200/32",
        "Alibaba Cloud instance metadata",
        "https://www.alibabacloud.com/help/en/ecs/user-guide/view-instance-metadata",
    ),
    // Oracle Cloud Infrastructure's metadata service over IPv6 (what its SDKs fall back to).
    listed(
        "fd00:c1::a9fe:a9fe/128",
        "Oracle Cloud instance metadata over IPv6",
        "https://docs.oracle.com/en-us/iaas/Content/Compute/Tasks/gettingmetadata.htm",
    ),
    // Oracle Cloud Infrastructure Classic's metadata service, inside 192.0.0.0/24.
    listed(
        "192.0.0.192/32",
        "Oracle Cloud Classic instance metadata",
        "https://docs.oracle.com/en/cloud/iaas-classic/compute-iaas-cloud/stcsg/retrieving-instance-metadata.html",
    ),
    // Scaleway's metadata service (cloud-init's Scaleway datasource documents both).
    listed(
        "169.254.42.42/32",
        "Scaleway instance metadata",
        "https://cloudinit.readthedocs.io/en/latest/reference/datasources/scaleway.html",
    ),
    listed(
        "fd00:42::42/128",
        "Scaleway instance metadata over IPv6",
        "https://cloudinit.readthedocs.io/en/latest/reference/datasources/scaleway.html",
    ),
    // Akamai (Linode) metadata service over IPv6.
    listed(
        "fd00:a9fe:a9fe::1/128",
        "Akamai (Linode) instance metadata over IPv6",
        "https://techdocs.akamai.com/cloud-computing/docs/metadata-service-api",
    ),
];

/// Ranges that are never a scan target: nothing answers there for a scanner that should, or
/// what answers is the host itself or its link.
pub const NEVER_SCANNED: &[Listed] = &[
    listed(
        "0.0.0.0/8",
        "\"this network\" (0.0.0.0 reaches the host itself)",
        "https://www.iana.org/assignments/iana-ipv4-special-registry (RFC 791, RFC 1122)",
    ),
    listed(
        "::/128",
        "the unspecified address (reaches the host itself)",
        "https://www.iana.org/assignments/iana-ipv6-special-registry (RFC 4291)",
    ),
    listed(
        "169.254.0.0/16",
        "link-local, where cloud metadata services live",
        "https://www.iana.org/assignments/iana-ipv4-special-registry (RFC 3927)",
    ),
    listed(
        "fe80::/10",
        "link-local",
        "https://www.iana.org/assignments/iana-ipv6-special-registry (RFC 4291)",
    ),
    listed(
        "224.0.0.0/4",
        "multicast",
        "https://www.iana.org/assignments/multicast-addresses (RFC 5771)",
    ),
    listed(
        "ff00::/8",
        "multicast",
        "https://www.iana.org/assignments/ipv6-multicast-addresses (RFC 4291)",
    ),
    listed(
        "255.255.255.255/32",
        "limited broadcast",
        "https://www.iana.org/assignments/iana-ipv4-special-registry (RFC 8190)",
    ),
];

/// IANA special-purpose ranges that are nobody's scan target by default: documentation and
/// benchmarking ranges, protocol anycast and relays, reserved space, the operator side of
/// carrier-grade NAT. They are refused unless a configured allow rule at least as specific as
/// the range covers the address: `allowed_cidrs = ["203.0.113.0/24"]` opens that
/// documentation range (a lab may use it), `allowed_cidrs = ["0.0.0.0/0"]` does not.
///
/// Loopback, the private ranges (RFC 1918) and unique-local IPv6 (`fc00::/7`) are
/// special-purpose too, but not listed: PHANTOM is a local tool by default and scanning one's
/// own network is its first use (the Helm chart denies them for a cluster). The IPv4-carrying
/// IPv6 prefixes (`::ffff:0:0/96`, `64:ff9b::/96`, `2002::/16`) are decided on the address
/// they carry instead (see [`super::embedded`]).
pub const SPECIAL_PURPOSE: &[Listed] = &[
    listed(
        "100.64.0.0/10",
        "shared address space (carrier-grade NAT): the access provider's network",
        "https://www.iana.org/assignments/iana-ipv4-special-registry (RFC 6598)",
    ),
    listed(
        "192.0.0.0/24",
        "IETF protocol assignments",
        "https://www.iana.org/assignments/iana-ipv4-special-registry (RFC 6890)",
    ),
    listed(
        "192.0.2.0/24",
        "documentation (TEST-NET-1)",
        "https://www.iana.org/assignments/iana-ipv4-special-registry (RFC 5737)",
    ),
    listed(
        "192.31.196.0/24",
        "AS112 DNS anycast",
        "https://www.iana.org/assignments/iana-ipv4-special-registry (RFC 7535)",
    ),
    listed(
        "192.52.193.0/24",
        "AMT relay anycast",
        "https://www.iana.org/assignments/iana-ipv4-special-registry (RFC 7450)",
    ),
    listed(
        "192.88.99.0/24",
        "6to4 relay anycast (deprecated)",
        "https://www.iana.org/assignments/iana-ipv4-special-registry (RFC 7526)",
    ),
    listed(
        "192.175.48.0/24",
        "AS112 direct delegation DNS anycast",
        "https://www.iana.org/assignments/iana-ipv4-special-registry (RFC 7534)",
    ),
    listed(
        "198.18.0.0/15",
        "network benchmarking",
        "https://www.iana.org/assignments/iana-ipv4-special-registry (RFC 2544)",
    ),
    listed(
        "198.51.100.0/24",
        "documentation (TEST-NET-2)",
        "https://www.iana.org/assignments/iana-ipv4-special-registry (RFC 5737)",
    ),
    listed(
        "203.0.113.0/24",
        "documentation (TEST-NET-3)",
        "https://www.iana.org/assignments/iana-ipv4-special-registry (RFC 5737)",
    ),
    listed(
        "240.0.0.0/4",
        "reserved",
        "https://www.iana.org/assignments/iana-ipv4-special-registry (RFC 1112)",
    ),
    // Where the IPv4 address sits in a local-use NAT64 address depends on the prefix length
    // the operator chose inside this /48 (RFC 6052 section 2.2), so a scope cannot know which
    // IPv4 address it reaches: only an operator who allows it knows its translator.
    listed(
        "64:ff9b:1::/48",
        "local-use IPv4/IPv6 translation",
        "https://www.iana.org/assignments/iana-ipv6-special-registry (RFC 8215)",
    ),
    listed(
        "100::/64",
        "discard-only",
        "https://www.iana.org/assignments/iana-ipv6-special-registry (RFC 6666)",
    ),
    listed(
        "100:0:0:1::/64",
        "dummy prefix",
        "https://www.iana.org/assignments/iana-ipv6-special-registry (RFC 9780)",
    ),
    // Teredo (2001::/32) is in here, and ORCHID, AMT, AS112 and benchmarking.
    listed(
        "2001::/23",
        "IETF protocol assignments (Teredo among them)",
        "https://www.iana.org/assignments/iana-ipv6-special-registry (RFC 2928)",
    ),
    listed(
        "2001:db8::/32",
        "documentation",
        "https://www.iana.org/assignments/iana-ipv6-special-registry (RFC 3849)",
    ),
    listed(
        "2620:4f:8000::/48",
        "AS112 direct delegation DNS anycast",
        "https://www.iana.org/assignments/iana-ipv6-special-registry (RFC 7534)",
    ),
    listed(
        "3fff::/20",
        "documentation",
        "https://www.iana.org/assignments/iana-ipv6-special-registry (RFC 9637)",
    ),
    listed(
        "5f00::/16",
        "segment routing (SRv6) SIDs",
        "https://www.iana.org/assignments/iana-ipv6-special-registry (RFC 9602)",
    ),
];

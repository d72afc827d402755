{{/*
The scan-orchestrator's scope, as its NetworkPolicy enforces it: the same tiers as the service
(services/scan-orchestrator/src/scope), so that the network refuses what the service refuses
even if the service were wrong.
  - never scanned: cloud platform endpoints and link-local, multicast, broadcast and
    unspecified ranges; no value opens them;
  - special-purpose: documentation, benchmarking, reserved, anycast, carrier-grade NAT; open
    only inside an allowed block at least as specific;
  - scope.deniedCidrs and scope.allowedCidrs.
Each IPv4 block of these lists is also refused in the IPv6 forms that carry it (NAT64
64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16, IPv4-compatible ::/96, Teredo server
2001::/32). Two forms cannot be written as CIDR blocks and are left to the service: a Teredo
client address and an ISATAP interface identifier.
*/}}

{{/*
Never scanned. A test of the scan-orchestrator (scope::tests) fails when this list and
PLATFORM_ENDPOINTS + NEVER_SCANNED in services/scan-orchestrator/src/scope/ranges.rs differ;
the sources of each entry are there.
*/}}
{{- define "phantom.scope.neverScanned" -}}
- 169.254.169.254/32      # cloud instance metadata (AWS, Google Cloud, Azure, Oracle, DigitalOcean, Akamai, OpenStack)
- fd00:ec2::254/128       # AWS instance metadata over IPv6
- 169.254.170.2/32        # Amazon ECS task metadata and credentials
- 169.254.170.23/32       # Amazon EKS Pod Identity Agent
- fd00:ec2::23/128        # Amazon EKS Pod Identity Agent over IPv6
- 169.254.169.253/32      # Amazon VPC DNS resolver
- fd00:ec2::253/128       # Amazon VPC DNS resolver over IPv6
- 169.254.169.123/32      # Amazon Time Sync Service
- fd00:ec2::123/128       # Amazon Time Sync Service over IPv6
- fd20:ce::254/128        # Google Cloud metadata server over IPv6
- 168.63.129.16/32        # Azure WireServer
- 100.100.100.200/32      # Alibaba Cloud instance metadata
- fd00:c1::a9fe:a9fe/128  # Oracle Cloud instance metadata over IPv6
- 192.0.0.192/32          # Oracle Cloud Classic instance metadata
- 169.254.42.42/32        # Scaleway instance metadata
- fd00:42::42/128         # Scaleway instance metadata over IPv6
- fd00:a9fe:a9fe::1/128   # Akamai (Linode) instance metadata over IPv6
- 0.0.0.0/8               # "this network"
- ::/128                  # unspecified
- 169.254.0.0/16          # link-local
- fe80::/10               # link-local
- 224.0.0.0/4             # multicast
- ff00::/8                # multicast
- 255.255.255.255/32      # limited broadcast
{{- end }}

{{/* Special-purpose (SPECIAL_PURPOSE in the same file). */}}
{{- define "phantom.scope.specialPurpose" -}}
- 100.64.0.0/10           # shared address space (carrier-grade NAT)
- 192.0.0.0/24            # IETF protocol assignments
- 192.0.2.0/24            # documentation (TEST-NET-1)
- 192.31.196.0/24         # AS112 DNS anycast
- 192.52.193.0/24         # AMT relay anycast
- 192.88.99.0/24          # 6to4 relay anycast (deprecated)
- 192.175.48.0/24         # AS112 direct delegation DNS anycast
- 198.18.0.0/15           # network benchmarking
- 198.51.100.0/24         # documentation (TEST-NET-2)
- 203.0.113.0/24          # documentation (TEST-NET-3)
- 240.0.0.0/4             # reserved
- 64:ff9b:1::/48          # local-use IPv4/IPv6 translation
- 100::/64                # discard-only
- 100:0:0:1::/64          # dummy prefix
- 2001::/23               # IETF protocol assignments (Teredo among them)
- 2001:db8::/32           # documentation
- 2620:4f:8000::/48       # AS112 direct delegation DNS anycast
- 3fff::/20               # documentation
- 5f00::/16               # segment routing (SRv6) SIDs
{{- end }}

{{/*
The IPv6 blocks that carry the addresses of an IPv4 block "a.b.c.d/p" (RFC 6052, 3056, 4291,
4380), one per line as a YAML list. Local-use NAT64 is written as an RFC 6052 /48: the IPv4
address around the reserved u octet (bits 64-71).
*/}}
{{- define "phantom.scope.carriers" -}}
{{- $parts := splitList "/" . }}
{{- $o := splitList "." (first $parts) }}
{{- $p := int (ternary (last $parts) "32" (eq (len $parts) 2)) }}
{{- $hi := printf "%x" (add (mul (atoi (index $o 0)) 256) (atoi (index $o 1))) }}
{{- $lo := printf "%x" (add (mul (atoi (index $o 2)) 256) (atoi (index $o 3))) }}
- 64:ff9b::{{ $hi }}:{{ $lo }}/{{ add 96 $p }}
- 2002:{{ $hi }}:{{ $lo }}::/{{ add 16 $p }}
- ::{{ $hi }}:{{ $lo }}/{{ add 96 $p }}
- 2001:0:{{ $hi }}:{{ $lo }}::/{{ add 32 $p }}
{{- if le $p 16 }}
- 64:ff9b:1:{{ $hi }}::/{{ add 48 $p }}
{{- else }}
- 64:ff9b:1:{{ $hi }}:{{ printf "%x" (atoi (index $o 2)) }}:{{ printf "%x" (mul (atoi (index $o 3)) 256) }}::/{{ add 56 $p }}
{{- end }}
{{- end }}

{{/*
The prefix of a CIDR block as bits, after its family: "4:1010100111111110" for 169.254.0.0/16.
A block is inside another when its bits start with the other's.
*/}}
{{- define "phantom.scope.bits" -}}
{{- $parts := splitList "/" . }}
{{- $addr := first $parts }}
{{- $bits := "" }}
{{- if contains ":" $addr }}
{{- if contains "." $addr }}
{{- /* A trailing dotted quad (::ffff:192.0.2.1) is two groups. */}}
{{- $quad := regexFind "[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$" $addr }}
{{- $q := splitList "." $quad }}
{{- $addr = printf "%s%x:%x" (trimSuffix $quad $addr) (add (mul (atoi (index $q 0)) 256) (atoi (index $q 1))) (add (mul (atoi (index $q 2)) 256) (atoi (index $q 3))) }}
{{- end }}
{{- $halves := splitList "::" $addr }}
{{- $head := list }}
{{- $tail := list }}
{{- if first $halves }}{{ $head = splitList ":" (first $halves) }}{{ end }}
{{- if and (eq (len $halves) 2) (last $halves) }}{{ $tail = splitList ":" (last $halves) }}{{ end }}
{{- $groups := $head }}
{{- range until (int (sub 8 (add (len $head) (len $tail)))) }}{{ $groups = append $groups "0" }}{{ end }}
{{- $groups = concat $groups $tail }}
{{- $nibbles := dict "0" "0000" "1" "0001" "2" "0010" "3" "0011" "4" "0100" "5" "0101" "6" "0110" "7" "0111" "8" "1000" "9" "1001" "a" "1010" "b" "1011" "c" "1100" "d" "1101" "e" "1110" "f" "1111" }}
{{- range $groups }}
{{- range splitList "" (printf "%s%s" (repeat (int (sub 4 (len .))) "0") (lower .)) }}
{{- $bits = print $bits (get $nibbles .) }}
{{- end }}
{{- end }}
{{- printf "6:%s" (trunc (int (ternary (last $parts) "128" (eq (len $parts) 2))) $bits) }}
{{- else }}
{{- range splitList "." $addr }}{{ $bits = print $bits (printf "%08b" (atoi .)) }}{{ end }}
{{- printf "4:%s" (trunc (int (ternary (last $parts) "32" (eq (len $parts) 2))) $bits) }}
{{- end }}
{{- end }}

{{/*
The scan-orchestrator's egress to scan targets, on any port: one ipBlock per allowed block
(scope.allowedCidrs; when empty, all of IPv4 and IPv6), each except what the service refuses
inside it. An allowed block inside a never-scanned range, or equal to a denied one, is left
out; when that leaves none, there is no rule at all (a rule with no peers would allow every
destination). networkPolicy.scanTargets, when set, replaces all of this.
*/}}
{{- define "phantom.scope.egress" -}}
{{- $scope := .Values.scope }}
{{- if .Values.networkPolicy.scanTargets }}
- to:
    {{- toYaml .Values.networkPolicy.scanTargets | nindent 4 }}
{{- else }}
{{- /* Every refused block once, with its tier and its bits. */}}
{{- $refused := list }}
{{- $tiers := dict "never" (include "phantom.scope.neverScanned" . | fromYamlArray) "denied" (default (list) $scope.deniedCidrs) "special" (include "phantom.scope.specialPurpose" . | fromYamlArray) }}
{{- range $tier, $cidrs := $tiers }}
{{- range $cidr := $cidrs }}
{{- $forms := list $cidr }}
{{- if not (contains ":" $cidr) }}
{{- $forms = concat $forms (include "phantom.scope.carriers" $cidr | fromYamlArray) }}
{{- end }}
{{- range $forms }}
{{- $refused = append $refused (dict "cidr" . "tier" $tier "bits" (include "phantom.scope.bits" .)) }}
{{- end }}
{{- end }}
{{- end }}
{{- $blocks := list }}
{{- range $allowed := default (list "0.0.0.0/0" "::/0") $scope.allowedCidrs }}
{{- $a := include "phantom.scope.bits" $allowed }}
{{- $closed := false }}
{{- $inside := list }}
{{- range $refused }}
{{- if and (eq .tier "never") (hasPrefix .bits $a) }}
{{- $closed = true }}
{{- else if and (eq .tier "denied") (eq .bits $a) }}
{{- $closed = true }}
{{- else if and (hasPrefix $a .bits) (ne .bits $a) }}
{{- $inside = append $inside . }}
{{- end }}
{{- end }}
{{- if not $closed }}
{{- /* Only the outermost of nested refused blocks, each once. */}}
{{- $except := list }}
{{- $seen := dict }}
{{- range $x := $inside }}
{{- $covered := hasKey $seen $x.bits }}
{{- range $y := $inside }}
{{- if and (hasPrefix $y.bits $x.bits) (ne $y.bits $x.bits) }}{{ $covered = true }}{{ end }}
{{- end }}
{{- if not $covered }}
{{- $except = append $except $x.cidr }}
{{- end }}
{{- $_ := set $seen $x.bits true }}
{{- end }}
{{- $blocks = append $blocks (dict "cidr" $allowed "except" $except) }}
{{- end }}
{{- end }}
{{- with $blocks }}
- to:
{{- range . }}
    - ipBlock:
        cidr: {{ .cidr }}
        {{- with .except }}
        except: {{ toJson . }}
        {{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

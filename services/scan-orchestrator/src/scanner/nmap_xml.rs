//! A streaming, tolerant reader of nmap's XML output (`-oX -`).
//!
//! It reports ports as their `</port>` arrives and progress from `<taskprogress>`, so a scan
//! shows results while nmap runs. Output cut short (nmap killed, disk full, nmap #243 and
//! #1917) keeps everything read so far, including a last port whose state was already read.
//! Unknown elements are skipped; malformed attributes make a port unusable, never a panic.

use std::net::IpAddr;

use quick_xml::{
    Reader, XmlVersion,
    events::{BytesStart, Event},
};

/// One port nmap reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NmapPort {
    /// The host's address.
    pub address: IpAddr,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The port.
    pub port: u16,
    /// `open`, `closed`, `filtered`, `open|filtered`…
    pub state: String,
    /// Service name (`ssh`, `http`), when nmap named one.
    pub service: String,
    /// Product, version and extra information, when version detection ran.
    pub product: String,
}

/// What the reader reports.
#[derive(Debug, Clone, PartialEq)]
pub enum NmapEvent {
    /// A port and its state.
    Port(NmapPort),
    /// nmap's own estimate, 0-100, of the task it is running.
    Progress(f64),
}

/// The reader's state between events.
#[derive(Debug, Default)]
pub struct NmapParser {
    host: Option<IpAddr>,
    port: Option<PartialPort>,
}

#[derive(Debug, Default)]
struct PartialPort {
    protocol: String,
    port: Option<u16>,
    state: Option<String>,
    service: String,
    product: String,
}

fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name)
        .and_then(|a| {
            a.normalized_value(XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

impl NmapParser {
    /// Handles an opening (or empty) element.
    pub fn start(&mut self, e: &BytesStart<'_>) -> Option<NmapEvent> {
        match e.name().as_ref() {
            "host" => {
                self.host = None;
                self.port = None;
            }
            "address" => {
                let kind = attr(e, "addrtype");
                if matches!(kind.as_deref(), Some("ipv4" | "ipv6")) {
                    self.host = attr(e, "addr").and_then(|a| a.parse().ok());
                }
            }
            "port" => {
                self.port = Some(PartialPort {
                    protocol: attr(e, "protocol").unwrap_or_else(|| "tcp".into()),
                    port: attr(e, "portid").and_then(|p| p.parse().ok()),
                    ..PartialPort::default()
                });
            }
            "state" => {
                if let Some(p) = &mut self.port {
                    p.state = attr(e, "state");
                }
            }
            "service" => {
                if let Some(p) = &mut self.port {
                    p.service = attr(e, "name").unwrap_or_default();
                    let product: Vec<String> = ["product", "version", "extrainfo"]
                        .iter()
                        .filter_map(|k| attr(e, k))
                        .filter(|v| !v.is_empty())
                        .collect();
                    p.product = product.join(" ");
                }
            }
            "taskprogress" => {
                return attr(e, "percent")
                    .and_then(|p| p.parse::<f64>().ok())
                    .filter(|p| p.is_finite())
                    .map(|p| NmapEvent::Progress(p.clamp(0.0, 100.0)));
            }
            _ => {}
        }
        None
    }

    /// Handles a closing element.
    pub fn end(&mut self, name: &str) -> Option<NmapEvent> {
        match name {
            "port" => self.take_port(),
            "host" => {
                self.host = None;
                None
            }
            _ => None,
        }
    }

    /// The output ended (cleanly or not): a port whose state was read is still reported.
    pub fn finish(&mut self) -> Option<NmapEvent> {
        self.take_port()
    }

    fn take_port(&mut self) -> Option<NmapEvent> {
        let p = self.port.take()?;
        Some(NmapEvent::Port(NmapPort {
            address: self.host?,
            protocol: p.protocol,
            port: p.port.filter(|p| *p > 0)?,
            state: p.state?,
            service: p.service,
            product: p.product,
        }))
    }
}

/// Reads a whole output (or what there is of it), for tests and fuzzing. The engine feeds the
/// same parser from nmap's stdout as it arrives.
pub fn parse(xml: &[u8]) -> Vec<NmapEvent> {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().check_end_names = false;
    let mut parser = NmapParser::default();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e) | Event::Empty(e)) => out.extend(parser.start(&e)),
            Ok(Event::End(e)) => out.extend(parser.end(e.name().as_ref())),
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
        buf.clear();
    }
    out.extend(parser.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE nmaprun>
<nmaprun scanner="nmap" args="nmap -sT -oX - 127.0.0.1" start="1764400000" version="7.93" xmloutputversion="1.05">
<scaninfo type="connect" protocol="tcp" numservices="3" services="22,80,443"/>
<taskprogress task="Connect Scan" time="1764400001" percent="33.33" remaining="2" etc="1764400003"/>
<host starttime="1764400000" endtime="1764400001"><status state="up" reason="user-set" reason_ttl="0"/>
<address addr="127.0.0.1" addrtype="ipv4"/>
<hostnames><hostname name="localhost" type="user"/></hostnames>
<ports><extraports state="closed" count="1"><extrareasons reason="conn-refused" count="1"/></extraports>
<port protocol="tcp" portid="22"><state state="open" reason="syn-ack" reason_ttl="0"/><service name="ssh" product="OpenSSH" version="9.2p1 Debian 2" extrainfo="protocol 2.0" method="probed" conf="10"><cpe>cpe:/a:openbsd:openssh:9.2p1</cpe></service></port>
<port protocol="tcp" portid="80"><state state="open" reason="syn-ack" reason_ttl="0"/><service name="http" method="table" conf="3"/></port>
</ports>
<times srtt="45" rttvar="5000" to="100000"/>
</host>
<runstats><finished time="1764400001" elapsed="0.05" exit="success"/><hosts up="1" down="0" total="1"/></runstats>
</nmaprun>
"#;

    #[test]
    fn reads_ports_services_and_progress() {
        let events = parse(OUTPUT.as_bytes());
        assert_eq!(events[0], NmapEvent::Progress(33.33));
        let ports: Vec<_> = events
            .iter()
            .filter_map(|e| {
                if let NmapEvent::Port(p) = e {
                    Some(p)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].port, 22);
        assert_eq!(ports[0].state, "open");
        assert_eq!(ports[0].service, "ssh");
        assert_eq!(ports[0].product, "OpenSSH 9.2p1 Debian 2 protocol 2.0");
        assert_eq!(ports[1].service, "http");
        assert_eq!(ports[1].address, "127.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn truncated_output_keeps_what_was_read() {
        let cut = OUTPUT.find("<service name=\"http\"").unwrap();
        let events = parse(&OUTPUT.as_bytes()[..cut]);
        let ports: Vec<_> = events
            .iter()
            .filter_map(|e| {
                if let NmapEvent::Port(p) = e {
                    Some(p.port)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(ports, vec![22, 80], "the cut port had its state already");
        let cut = OUTPUT.find("<port protocol=\"tcp\" portid=\"80\"").unwrap() + 10;
        assert_eq!(
            parse(&OUTPUT.as_bytes()[..cut])
                .iter()
                .filter(|e| matches!(e, NmapEvent::Port(_)))
                .count(),
            1
        );
    }

    #[test]
    fn garbage_yields_nothing_and_never_panics() {
        for bad in [&b""[..], b"<", b"<port portid=\"99999\"><state state=\"open\"/></port>", b"\xff\xfe<host>", b"<taskprogress percent=\"NaN\"/>", b"<address addr=\"not-ip\" addrtype=\"ipv4\"/><port portid=\"1\"><state state=\"open\"/></port>"] {
            let events = parse(bad);
            assert!(events.iter().all(|e| !matches!(e, NmapEvent::Port(_))), "{bad:?}: {events:?}");
        }
    }
}

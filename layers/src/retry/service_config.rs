//! A [`RetryConfig`] as a gRPC service config (`methodConfig`, `retryThrottling`), so one
//! policy file serves PHANTOM and any other gRPC client (grpc-go, grpc-java, grpc-core).
//!
//! Names and formats are those of `grpc/service_config/service_config.proto` in its JSON
//! form, as gRFC A6 uses them: durations are decimal seconds with an `s` (`"0.1s"`), status
//! codes their upper-case names. What has no counterpart there is mapped this way:
//!
//! - The backoff is gRFC A6's: a full-jitter exponential (`initialBackoff`, `maxBackoff`,
//!   `backoffMultiplier`); a config read from JSON gets the `full_jitter` strategy, and a
//!   config with another strategy is written with its `initial`, `max` and `multiplier`.
//! - The retry budget is PHANTOM's own: not written, and the default when read.
//! - Idempotent methods are the names of the `methodConfig` with the `retryPolicy`; hedged
//!   ones, of the one with the `hedgingPolicy`. PHANTOM has one policy of each per client,
//!   so several `methodConfig`s must agree on it.
//! - `maxAttempts` above 5 is read as 5, as gRPC's clients do. Other `methodConfig` keys
//!   (`timeout`, `waitForReady`) are ignored, as they belong to other layers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    policy::{CODE_NAMES, HedgingConfig, RetryConfig, matches},
    throttle::ThrottlingConfig,
};
use crate::backoff::{Backoff, Strategy};

/// The most attempts gRFC A6 lets a policy ask for.
const A6_MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    method_config: Vec<MethodConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_throttling: Option<RetryThrottling>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MethodConfig {
    #[serde(default)]
    name: Vec<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_policy: Option<RetryPolicyJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hedging_policy: Option<HedgingPolicyJson>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Name {
    #[serde(default)]
    service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    method: Option<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetryPolicyJson {
    max_attempts: u32,
    initial_backoff: String,
    max_backoff: String,
    backoff_multiplier: f64,
    retryable_status_codes: Vec<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HedgingPolicyJson {
    max_attempts: u32,
    #[serde(default = "zero_seconds")]
    hedging_delay: String,
    #[serde(default)]
    non_fatal_status_codes: Vec<String>,
}

fn zero_seconds() -> String {
    "0s".into()
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetryThrottling {
    max_tokens: u32,
    /// An `f64` so that `0.1` is written `0.1`, not the `f32`'s `0.10000000149011612`.
    token_ratio: f64,
}

/// `d` as a protobuf JSON duration: `"0.1s"`, `"1s"`, `"0.000001s"`.
fn format_duration(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        return format!("{}s", d.as_secs());
    }
    let frac = format!("{nanos:09}");
    format!("{}.{}s", d.as_secs(), frac.trim_end_matches('0'))
}

/// A protobuf JSON duration (`"0.1s"`: seconds, up to 9 decimals, `s`).
fn parse_duration(field: &str, s: &str) -> Result<Duration, String> {
    let bad = || format!("{field}: {s:?} is not a duration like \"0.1s\"");
    let n = s.strip_suffix('s').ok_or_else(bad)?;
    let (secs, frac) = n.split_once('.').unwrap_or((n, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if secs.is_empty() || !digits(secs) || !digits(frac) || frac.len() > 9 {
        return Err(bad());
    }
    let secs: u64 = secs.parse().map_err(|_| bad())?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    Ok(Duration::new(secs, nanos))
}

fn positive_duration(field: &str, s: &str) -> Result<Duration, String> {
    let d = parse_duration(field, s)?;
    if d.is_zero() {
        return Err(format!("{field} must be above 0s"));
    }
    Ok(d)
}

fn max_attempts(field: &str, n: u32) -> Result<u32, String> {
    if n < 2 {
        return Err(format!("{field} must be at least 2 (gRFC A6), not {n}"));
    }
    Ok(n.min(A6_MAX_ATTEMPTS))
}

fn code_names(field: &str, names: &[String]) -> Result<Vec<String>, String> {
    for n in names {
        if !CODE_NAMES.iter().any(|(_, known)| known == n) {
            return Err(format!(
                "{field}: {n:?} is not a gRPC status code name (UNAVAILABLE, ABORTED…)"
            ));
        }
    }
    Ok(names.to_vec())
}

/// `/package.Service/Method` or `/package.Service/*` as a service config name.
fn name_of(pattern: &str) -> Result<Name, String> {
    let unsupported = || {
        format!(
            "{pattern:?} has no service config name: only /package.Service/Method and \
             /package.Service/* have one"
        )
    };
    let (service, method) = crate::classify::service_and_method(pattern).ok_or_else(unsupported)?;
    if service.is_empty() || service.contains('*') || method.is_empty() {
        return Err(unsupported());
    }
    match method {
        "*" => Ok(Name {
            service: service.to_owned(),
            method: None,
        }),
        m if m.contains('*') => Err(unsupported()),
        m => Ok(Name {
            service: service.to_owned(),
            method: Some(m.to_owned()),
        }),
    }
}

fn pattern_of(field: &str, name: &Name) -> Result<String, String> {
    if name.service.is_empty() {
        return Err(format!(
            "{field}: a name without service (every method) is not supported: name the services"
        ));
    }
    Ok(match name.method.as_deref() {
        None | Some("") => format!("/{}/*", name.service),
        Some(m) => format!("/{}/{m}", name.service),
    })
}

/// Keeps the one policy every `methodConfig` of a kind must share.
fn same<T: PartialEq>(
    seen: &mut Option<(usize, T)>,
    at: usize,
    policy: T,
    kind: &str,
) -> Result<(), String> {
    match seen {
        Some((first, p)) if *p != policy => Err(format!(
            "methodConfig[{at}].{kind} differs from methodConfig[{first}]'s: PHANTOM has one \
             {kind} per client"
        )),
        Some(_) => Ok(()),
        None => {
            *seen = Some((at, policy));
            Ok(())
        }
    }
}

impl RetryConfig {
    /// The config a gRPC service config (JSON) describes, checked by [`RetryConfig::validate`];
    /// the message names what is wrong (`methodConfig[0].retryPolicy.maxAttempts …`).
    pub fn from_service_config(json: &str) -> Result<RetryConfig, String> {
        let sc: ServiceConfig =
            serde_json::from_str(json).map_err(|e| format!("service config: {e}"))?;
        let mut config = RetryConfig {
            enabled: false,
            idempotent_methods: Vec::new(),
            throttling: None,
            hedging: HedgingConfig::default(),
            ..RetryConfig::default()
        };
        let mut retry = None;
        let mut hedging = None;
        for (i, mc) in sc.method_config.iter().enumerate() {
            let at = format!("methodConfig[{i}]");
            let names = mc
                .name
                .iter()
                .enumerate()
                .map(|(j, n)| pattern_of(&format!("{at}.name[{j}]"), n))
                .collect::<Result<Vec<_>, _>>()?;
            match (&mc.retry_policy, &mc.hedging_policy) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{at}: retryPolicy and hedgingPolicy are both set; gRFC A6 allows one per method"
                    ));
                }
                (Some(p), None) => {
                    same(&mut retry, i, p, "retryPolicy")?;
                    config.idempotent_methods.extend(names);
                }
                (None, Some(p)) => {
                    same(&mut hedging, i, p, "hedgingPolicy")?;
                    config.idempotent_methods.extend(names.iter().cloned());
                    config.hedging.methods.extend(names);
                }
                (None, None) => {}
            }
        }
        if let Some((i, p)) = retry {
            let at = format!("methodConfig[{i}].retryPolicy");
            config.max_attempts = max_attempts(&format!("{at}.maxAttempts"), p.max_attempts)?;
            let initial = positive_duration(&format!("{at}.initialBackoff"), &p.initial_backoff)?;
            let max = positive_duration(&format!("{at}.maxBackoff"), &p.max_backoff)?;
            if p.backoff_multiplier.is_nan() || p.backoff_multiplier <= 0.0 {
                return Err(format!("{at}.backoffMultiplier must be above 0"));
            }
            config.backoff = Backoff {
                strategy: Strategy::FullJitter,
                initial,
                max,
                multiplier: p.backoff_multiplier,
            };
            if p.retryable_status_codes.is_empty() {
                return Err(format!("{at}.retryableStatusCodes must not be empty"));
            }
            config.retryable_codes = code_names(
                &format!("{at}.retryableStatusCodes"),
                &p.retryable_status_codes,
            )?;
        }
        if let Some((i, p)) = hedging {
            let at = format!("methodConfig[{i}].hedgingPolicy");
            config.hedging.enabled = true;
            config.hedging.max_attempts =
                max_attempts(&format!("{at}.maxAttempts"), p.max_attempts)?;
            config.hedging.delay = parse_duration(&format!("{at}.hedgingDelay"), &p.hedging_delay)?;
            config.hedging.non_fatal_codes = code_names(
                &format!("{at}.nonFatalStatusCodes"),
                &p.non_fatal_status_codes,
            )?;
        }
        config.enabled = !config.idempotent_methods.is_empty();
        if let Some(t) = sc.retry_throttling {
            config.throttling = Some(ThrottlingConfig {
                max_tokens: t.max_tokens,
                token_ratio: t.token_ratio as f32,
            });
        }
        config
            .validate()
            .map_err(|e| format!("service config: {e}"))?;
        Ok(config)
    }

    /// This config as a gRPC service config (JSON), for other gRPC clients; see the
    /// [module docs](self) for what maps to what. Fails on a method pattern a service config
    /// cannot name (`/pkg.Svc/Get*`).
    pub fn to_service_config(&self) -> Result<serde_json::Value, String> {
        let mut sc = ServiceConfig {
            retry_throttling: self.throttling.map(|t| RetryThrottling {
                max_tokens: t.max_tokens,
                // At most three decimals (validated): written as the decimal it was read as.
                token_ratio: (f64::from(t.token_ratio) * 1000.0).round() / 1000.0,
            }),
            ..ServiceConfig::default()
        };
        let h = &self.hedging;
        let hedged: Vec<&String> = if self.enabled && h.enabled {
            h.methods
                .iter()
                .filter(|m| matches(&self.idempotent_methods, m))
                .collect()
        } else {
            Vec::new()
        };
        let retried: Vec<&String> = if self.enabled && self.max_attempts >= 2 {
            self.idempotent_methods
                .iter()
                .filter(|m| !hedged.contains(m))
                .collect()
        } else {
            Vec::new()
        };
        let names = |ms: &[&String]| ms.iter().map(|m| name_of(m)).collect::<Result<Vec<_>, _>>();
        if !retried.is_empty() {
            sc.method_config.push(MethodConfig {
                name: names(&retried)?,
                retry_policy: Some(RetryPolicyJson {
                    max_attempts: self.max_attempts.min(A6_MAX_ATTEMPTS),
                    initial_backoff: format_duration(self.backoff.initial),
                    max_backoff: format_duration(self.backoff.max),
                    backoff_multiplier: self.backoff.multiplier,
                    retryable_status_codes: self.retryable_codes.clone(),
                }),
                hedging_policy: None,
            });
        }
        if !hedged.is_empty() {
            sc.method_config.push(MethodConfig {
                name: names(&hedged)?,
                retry_policy: None,
                hedging_policy: Some(HedgingPolicyJson {
                    max_attempts: h.max_attempts.min(A6_MAX_ATTEMPTS),
                    hedging_delay: format_duration(h.delay),
                    non_fatal_status_codes: h.non_fatal_codes.clone(),
                }),
            });
        }
        serde_json::to_value(sc).map_err(|e| format!("service config: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_protobuf_json_durations() {
        for (text, d) in [
            ("0.1s", Duration::from_millis(100)),
            ("1s", Duration::from_secs(1)),
            ("0.000001s", Duration::from_micros(1)),
            ("2.5s", Duration::from_millis(2500)),
        ] {
            assert_eq!(parse_duration("f", text), Ok(d));
            assert_eq!(format_duration(d), text);
        }
        for bad in ["100ms", "0.1", "-1s", ".5s", "1.0000000001s", "s", "1e3s"] {
            assert!(parse_duration("f", bad).is_err(), "{bad}");
        }
    }
}

//! ServiceEntry rules (Istio's `ValidateServiceEntry`): hosts, ports, and endpoints as the
//! resolution allows them.

use std::collections::HashSet;
use std::net::IpAddr;

use super::At;
use crate::config::service_entry::Resolution;
use crate::config::{ConfigSet, Diagnostics};

pub(super) fn check(set: &ConfigSet, out: &mut Diagnostics) {
    for se in &set.service_entries {
        let mut at = At { resource: se, out: &mut *out };
        let spec = &se.spec;
        if spec.hosts.is_empty() {
            at.error("spec.hosts", "service entry must have at least one host");
        }
        for (i, host) in spec.hosts.iter().enumerate() {
            if host == "*" {
                at.error(format!("spec.hosts[{i}]"), "invalid host *");
            } else {
                at.host(format!("spec.hosts[{i}]"), host);
            }
        }
        let (mut numbers, mut names) = (HashSet::new(), HashSet::new());
        for (i, port) in spec.ports.iter().enumerate() {
            let pp = format!("spec.ports[{i}]");
            at.port(format!("{pp}.number"), port.number);
            if let Some(target) = port.target_port {
                at.port(format!("{pp}.targetPort"), target);
            }
            if !numbers.insert(port.number) {
                at.error(format!("{pp}.number"), format!("service entry port {} already defined", port.number));
            }
            if !names.insert(port.name.as_str()) {
                at.error(format!("{pp}.name"), format!("service entry port name {:?} already defined", port.name));
            }
        }
        let resolution = spec.resolution.unwrap_or(Resolution::None);
        if resolution == Resolution::None && !spec.endpoints.is_empty() {
            at.error("spec.endpoints", "no endpoints should be provided for resolution type NONE");
            continue;
        }
        for (i, ep) in spec.endpoints.iter().enumerate() {
            let ep_path = format!("spec.endpoints[{i}]");
            match ep.address.as_deref() {
                None | Some("") if resolution == Resolution::Static => {
                    at.error(format!("{ep_path}.address"), "endpoint address is required for resolution type STATIC");
                }
                Some(a)
                    if resolution == Resolution::Static
                        && !a.starts_with("unix://")
                        && a.parse::<IpAddr>().is_err() =>
                {
                    at.error(
                        format!("{ep_path}.address"),
                        format!("{a} is not a valid IP address (resolution type STATIC)"),
                    );
                }
                _ => {}
            }
            for (name, &number) in &ep.ports {
                let field = format!("{ep_path}.ports.{name}");
                at.port(field.clone(), number);
                if !names.contains(name.as_str()) {
                    at.error(field, format!("endpoint port {name} is not defined by the service entry"));
                }
            }
        }
    }
}

//! `spec.mysqlConfig` settings that apply online reach every running
//! server with `SET GLOBAL`, once per server and change: what each server
//! was given is remembered, so a server that was down gets it when it
//! answers again, and a removed setting goes back to its default.

use std::collections::BTreeMap;

use super::{Action, Decision, Input};

/// Sets what changed on every answering server; remembers what it set.
pub(super) fn apply(input: &Input<'_>, decision: &mut Decision) {
    let desired = &input.policy.online_config;
    let none = BTreeMap::new();
    let mut actions = Vec::new();
    for server in input.servers {
        if !server.answered() || server.terminating {
            continue;
        }
        let given = input.memory.online_config.get(&server.pod).unwrap_or(&none);
        if given == desired {
            continue;
        }
        let mut settings: Vec<(String, String)> = desired
            .iter()
            .filter(|(key, value)| given.get(*key) != Some(*value))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        settings.extend(
            given
                .keys()
                .filter(|key| !desired.contains_key(*key))
                .map(|key| (key.clone(), "DEFAULT".to_owned())),
        );
        actions.push(Action::SetGlobals {
            pod: server.pod.clone(),
            settings,
        });
        decision
            .memory
            .online_config
            .insert(server.pod.clone(), desired.clone());
    }
    // Pods that are gone (scaled down) are forgotten.
    decision
        .memory
        .online_config
        .retain(|pod, _| input.server(pod).is_some());
    if decision.memory.online_config != input.memory.online_config {
        decision.step(actions);
        decision.remember();
    }
}

//! `mysqlConfig` settings applied online.

use super::*;

fn online_policy(settings: &[(&str, &str)]) -> Policy {
    Policy {
        online_config: settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..policy()
    }
}

fn set_globals(d: &Decision) -> Vec<(&str, &[(String, String)])> {
    d.actions()
        .filter_map(|a| match a {
            Action::SetGlobals { pod, settings } => Some((pod.as_str(), settings.as_slice())),
            _ => None,
        })
        .collect()
}

fn pair(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

#[test]
fn online_settings_reach_every_answering_server_once() {
    let mut servers = settled_three();
    servers[2] = silent(servers[2].clone());
    let wanted = online_policy(&[("max_connections", "300")]);
    let d = decide_with(&servers, &wanted, &healthy_memory());
    let set = set_globals(&d);
    assert_eq!(
        set,
        [
            ("db-0", &[pair("max_connections", "300")][..]),
            ("db-1", &[pair("max_connections", "300")][..]),
        ],
        "the silent server gets it when it answers"
    );
    assert!(
        matches!(
            d.steps.last().map(Vec::as_slice),
            Some([Action::Remember(_)])
        ),
        "remembered after it was set"
    );
    assert!(
        restarts(&d).is_empty(),
        "and nothing restarts the same pass"
    );

    // Remembered: the next pass sets it only on the server that was silent.
    servers[2] = replica("db-2", "0-100-9", "db-0");
    let d = decide_with(&servers, &wanted, &d.memory);
    assert_eq!(
        set_globals(&d),
        [("db-2", &[pair("max_connections", "300")][..])]
    );
    let d = decide_with(&servers, &wanted, &d.memory);
    assert!(d.is_settled(), "nothing left to set: {d:?}");
}

#[test]
fn a_changed_or_removed_online_setting_is_set_or_returned_to_its_default() {
    let servers = [primary("db-0", "0-100-9")];
    let first = online_policy(&[("max_connections", "300"), ("wait_timeout", "60")]);
    let memory = decide_with(&servers, &first, &healthy_memory()).memory;
    let second = online_policy(&[("max_connections", "500")]);
    let d = decide_with(&servers, &second, &memory);
    assert_eq!(
        set_globals(&d),
        [(
            "db-0",
            &[
                pair("max_connections", "500"),
                pair("wait_timeout", "DEFAULT")
            ][..]
        )]
    );
}

#[test]
fn servers_that_are_gone_are_forgotten() {
    let wanted = online_policy(&[("max_connections", "300")]);
    let memory = decide_with(&settled_three(), &wanted, &healthy_memory()).memory;
    assert_eq!(memory.online_config.len(), 3);
    let two = &settled_three()[..2];
    let d = decide_with(two, &wanted, &memory);
    assert!(set_globals(&d).is_empty());
    assert_eq!(
        d.memory.online_config.keys().collect::<Vec<_>>(),
        ["db-0", "db-1"]
    );
}

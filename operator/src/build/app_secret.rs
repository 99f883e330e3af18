//! The `<name>-app` Secret: everything an application needs to connect as
//! the owner of `spec.database`, through the primary and the read Service.
//! Derived on every reconcile from the spec and the owner's password in the
//! credentials Secret (which outlives the cluster, as the account does), so
//! it is owned by the cluster and goes with it.

use std::collections::BTreeMap;

use ebisu_api::{
    Flavor,
    names::{self, MYSQL_PORT, app_keys},
};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::child_meta;
use crate::validate::ValidatedCluster;

/// The Secret for `cluster`'s application owner with `password`, or `None`
/// when the spec declares no database.
pub fn build(cluster: &ValidatedCluster, password: &str) -> Option<Secret> {
    let database = cluster.database.as_ref()?;
    let host = |service: String| format!("{service}.{}.svc", cluster.namespace);
    let host_primary = host(names::primary_service(&cluster.name));
    let host_read = host(names::read_service(&cluster.name));
    let user = &database.owner;
    let db = &database.name;
    let uri = |host: &str| {
        format!(
            "mysql://{}:{}@{host}:{MYSQL_PORT}/{}",
            utf8_percent_encode(user, NON_ALPHANUMERIC),
            utf8_percent_encode(password, NON_ALPHANUMERIC),
            utf8_percent_encode(db, NON_ALPHANUMERIC),
        )
    };
    let jdbc_scheme = match cluster.flavor {
        Flavor::Mariadb => "mariadb",
        Flavor::Mysql => "mysql",
    };
    let data = BTreeMap::from([
        (app_keys::USERNAME, user.clone()),
        (app_keys::PASSWORD, password.to_owned()),
        (app_keys::DBNAME, db.clone()),
        (app_keys::HOST, host_primary.clone()),
        (app_keys::READ_HOST, host_read.clone()),
        (app_keys::PORT, MYSQL_PORT.to_string()),
        (app_keys::URI, uri(&host_primary)),
        (app_keys::READ_URI, uri(&host_read)),
        (
            app_keys::JDBC_URI,
            format!("jdbc:{jdbc_scheme}://{host_primary}:{MYSQL_PORT}/{db}"),
        ),
    ]);
    Some(Secret {
        metadata: child_meta(cluster, names::app_secret(&cluster.name)),
        type_: Some("kubernetes.io/basic-auth".to_owned()),
        // `data`, not `stringData`: server-side apply then owns each key.
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{BASIC, validated};

    fn with_database(flavor: &str) -> ValidatedCluster {
        validated(&format!(
            "{BASIC}  flavor: {flavor}\n  database: {{name: shop_db, owner: shop}}\n"
        ))
    }

    #[test]
    fn no_database_no_secret() {
        assert!(build(&validated(BASIC), "pw").is_none());
    }

    #[test]
    fn the_secret_names_both_services_and_escapes_the_password_in_uris() {
        let secret = build(&with_database("mariadb"), "p@ss/word").expect("declared");
        assert_eq!(secret.metadata.name.as_deref(), Some("orders-app"));
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert!(
            secret.metadata.owner_references.is_some(),
            "goes with the cluster"
        );
        let data = secret.data.expect("data");
        let get = |k: &str| data.get(k).and_then(|v| std::str::from_utf8(&v.0).ok());
        assert_eq!(get("username"), Some("shop"));
        assert_eq!(get("password"), Some("p@ss/word"));
        assert_eq!(get("dbname"), Some("shop_db"));
        assert_eq!(get("host"), Some("orders-primary.shop.svc"));
        assert_eq!(get("read-host"), Some("orders-read.shop.svc"));
        assert_eq!(get("port"), Some("3306"));
        assert_eq!(
            get("uri"),
            Some("mysql://shop:p%40ss%2Fword@orders-primary.shop.svc:3306/shop%5Fdb")
        );
        assert_eq!(
            get("read-uri"),
            Some("mysql://shop:p%40ss%2Fword@orders-read.shop.svc:3306/shop%5Fdb")
        );
        assert_eq!(
            get("jdbc-uri"),
            Some("jdbc:mariadb://orders-primary.shop.svc:3306/shop_db")
        );
    }

    #[test]
    fn mysql_gets_a_mysql_jdbc_uri() {
        let secret = build(&with_database("mysql"), "pw").expect("declared");
        let data = secret.data.expect("data");
        assert!(data["jdbc-uri"].0.starts_with(b"jdbc:mysql://"));
    }
}

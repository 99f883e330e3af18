//! The version rules of a rolling update: a server never moves to an older
//! release series (MAJOR.MINOR) than one the cluster runs, and no replica
//! runs an older series than its primary. Replicas restart first, so an
//! upgrade keeps them at or ahead of the primary; a downgrade would put
//! them behind it whatever the order, and the older server may not open
//! the newer one's data files at all. Patch releases of one series
//! replicate both ways and may go down.

use ebisu_mysql::ServerVersion;

use super::Input;
use crate::model::ServerState;

/// A release series: MAJOR.MINOR.
pub type Series = (u32, u32);

/// The series an image's tag names (`mariadb:11.4`, `mysql:8.4.3-oracle`,
/// `registry:5000/mariadb:10.11.9@sha256:...`), when its tag starts with
/// one; a tag that names none (`latest`, a digest alone) says nothing.
pub fn image_series(image: &str) -> Option<Series> {
    let name = image.split('@').next().unwrap_or_default();
    let last = name.rsplit('/').next().unwrap_or_default();
    let (_, tag) = last.split_once(':')?;
    let (major, rest) = tag.split_at(tag.find(|c: char| !c.is_ascii_digit())?);
    let rest = rest.strip_prefix('.')?;
    let minor = &rest[..rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len())];
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn series(version: &ServerVersion) -> Series {
    (version.major, version.minor)
}

fn shown((major, minor): Series) -> String {
    format!("{major}.{minor}")
}

/// Why the rolling update must not go on, if it must not: the spec's image
/// names an older series than a server runs, or a restarted replica came
/// back on an older series than the primary's.
pub(super) fn refusal(input: &Input<'_>, primary: &ServerState) -> Option<String> {
    let image = &input.policy.image;
    if let Some(wanted) = image_series(image) {
        let newest = input
            .servers
            .iter()
            .filter_map(|s| Some((s, s.version?)))
            .max_by_key(|(_, v)| series(v));
        if let Some((server, running)) = newest
            && series(&running) > wanted
        {
            return Some(format!(
                "spec.image {image} is release {}, older than the {running} {} runs: \
                 a server never moves to an older release series (the older server may \
                 not open the newer one's data, and replicas would run behind the \
                 primary); set spec.image back to a {} image or newer",
                shown(wanted),
                server.pod,
                shown(series(&running)),
            ));
        }
    }
    let primary_version = primary.version?;
    let primary_series = series(&primary_version);
    input
        .others(&primary.pod)
        .filter(|s| !s.outdated)
        .find_map(|s| {
            let version = s.version?;
            (series(&version) < primary_series).then(|| {
                format!(
                    "{} came back on {version}, older than the {} primary {} runs: \
                     no other server is restarted onto an older release; set spec.image \
                     back to a {} image or newer",
                    s.pod,
                    primary_version,
                    primary.pod,
                    shown(primary_series),
                )
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_names_a_series_when_it_starts_with_major_dot_minor() {
        for (image, wanted) in [
            ("mariadb:11.4", Some((11, 4))),
            ("docker.io/library/mysql:8.4.3-oraclelinux9", Some((8, 4))),
            ("registry:5000/mariadb:10.11.9@sha256:abc", Some((10, 11))),
            ("mysql:9.7", Some((9, 7))),
            ("mariadb", None),
            ("mariadb:latest", None),
            ("registry:5000/mariadb", None),
            ("mariadb:11", None),
            ("mariadb:lts-11.4", None),
            ("mariadb:11-4", None),
            ("mysql@sha256:0123", None),
        ] {
            assert_eq!(image_series(image), wanted, "{image}");
        }
    }
}

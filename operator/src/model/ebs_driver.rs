//! Which EBS CSI driver makes this cluster's volumes: the EBS CSI driver
//! (the EKS add-on, `ebs.csi.aws.com`) or EKS Auto Mode's
//! (`ebs.csi.eks.amazonaws.com`), chosen once at startup from the cluster's
//! CSIDriver objects or set by the install. Everything the two differ in
//! for ebisu is here: the provisioner name, the zone key on their volumes,
//! and the tag a volume ebisu creates needs so that the driver (and its IAM
//! policy) will attach and modify it.

/// The EBS CSI driver: the EKS add-on, or installed by hand.
pub const ADD_ON: &str = "ebs.csi.aws.com";
/// EKS Auto Mode's EBS driver.
pub const AUTO_MODE: &str = "ebs.csi.eks.amazonaws.com";

/// Why no driver could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The install names a provisioner ebisu does not drive.
    #[error(
        "failed to use EBS provisioner {0:?}: ebisu drives {ADD_ON} (the EBS CSI add-on) and {AUTO_MODE} (EKS Auto Mode); set the chart's storage.ebsProvisioner to one of them, or leave it empty to detect"
    )]
    Unknown(String),
}

/// The driver of the volumes ebisu makes and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EbsDriver {
    /// `ebs.csi.aws.com`.
    #[default]
    AddOn,
    /// `ebs.csi.eks.amazonaws.com`.
    AutoMode,
}

impl EbsDriver {
    /// The install's choice (`forced`, if any) or, failing that, what the
    /// cluster has: the add-on when it is installed (also beside Auto
    /// Mode: a user who installed it meant it), Auto Mode's when only it
    /// is, and the add-on when neither is (claims then wait, and the
    /// claim diagnosis says for what).
    pub fn choose<'a>(
        forced: Option<&str>,
        installed: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, Error> {
        if let Some(name) = forced.filter(|n| !n.is_empty()) {
            return Self::named(name).ok_or_else(|| Error::Unknown(name.to_owned()));
        }
        let installed: Vec<&str> = installed.into_iter().collect();
        Ok(
            if !installed.contains(&ADD_ON) && installed.contains(&AUTO_MODE) {
                Self::AutoMode
            } else {
                Self::AddOn
            },
        )
    }

    /// The driver called `name`, if ebisu drives it.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            ADD_ON => Some(Self::AddOn),
            AUTO_MODE => Some(Self::AutoMode),
            _ => None,
        }
    }

    /// The provisioner (and CSI driver) name.
    pub fn provisioner(self) -> &'static str {
        match self {
            Self::AddOn => ADD_ON,
            Self::AutoMode => AUTO_MODE,
        }
    }

    /// Whether a volume of CSI driver `name` is an EBS volume ebisu reads
    /// (either driver: a cluster may hold volumes of both).
    pub fn is_ebs(name: &str) -> bool {
        Self::named(name).is_some()
    }

    /// The tag a volume ebisu creates carries so that this driver's IAM
    /// policy lets it be attached and modified: the add-on's managed
    /// policy scopes to `ebs.csi.aws.com/cluster=true`; Auto Mode's to
    /// `eks:eks-cluster-name=<the EKS cluster>` (`None` without the name).
    pub fn volume_tag(self, eks_cluster: Option<&str>) -> Option<(&'static str, String)> {
        match self {
            Self::AddOn => Some(("ebs.csi.aws.com/cluster", "true".to_owned())),
            Self::AutoMode => eks_cluster.map(|name| ("eks:eks-cluster-name", name.to_owned())),
        }
    }
}

/// The zone keys the drivers put in their volumes' node affinity (the
/// driver's own key, `topology.<driver>/zone`, on older volumes; the
/// standard zone label on newer ones is read beside these).
pub const ZONE_KEYS: [&str; 2] = [
    "topology.ebs.csi.aws.com/zone",
    "topology.ebs.csi.eks.amazonaws.com/zone",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_s_choice_wins_and_an_unknown_one_is_refused_by_name() {
        assert_eq!(
            EbsDriver::choose(Some(AUTO_MODE), [ADD_ON]),
            Ok(EbsDriver::AutoMode)
        );
        assert_eq!(
            EbsDriver::choose(Some(ADD_ON), [AUTO_MODE]),
            Ok(EbsDriver::AddOn)
        );
        let refused = EbsDriver::choose(Some("ebs.csi.example.com"), []).unwrap_err();
        assert!(
            refused.to_string().contains("storage.ebsProvisioner"),
            "{refused}"
        );
        assert_eq!(
            EbsDriver::choose(Some(""), [AUTO_MODE]),
            Ok(EbsDriver::AutoMode)
        );
    }

    #[test]
    fn detection_prefers_the_add_on_and_takes_auto_mode_when_it_is_alone() {
        let cases: [(&[&str], EbsDriver); 5] = [
            (&[], EbsDriver::AddOn),
            (&[ADD_ON], EbsDriver::AddOn),
            (&[AUTO_MODE], EbsDriver::AutoMode),
            (&[AUTO_MODE, ADD_ON], EbsDriver::AddOn),
            (&["efs.csi.aws.com", AUTO_MODE], EbsDriver::AutoMode),
        ];
        for (installed, expected) in cases {
            assert_eq!(
                EbsDriver::choose(None, installed.iter().copied()),
                Ok(expected),
                "{installed:?}"
            );
        }
    }

    #[test]
    fn volumes_ebisu_creates_carry_the_tag_each_driver_s_policy_scopes_to() {
        assert_eq!(
            EbsDriver::AddOn.volume_tag(Some("prod")),
            Some(("ebs.csi.aws.com/cluster", "true".to_owned()))
        );
        assert_eq!(
            EbsDriver::AutoMode.volume_tag(Some("prod")),
            Some(("eks:eks-cluster-name", "prod".to_owned()))
        );
        assert_eq!(EbsDriver::AutoMode.volume_tag(None), None);
        assert!(EbsDriver::is_ebs(ADD_ON) && EbsDriver::is_ebs(AUTO_MODE));
        assert!(!EbsDriver::is_ebs("efs.csi.aws.com"));
    }
}

//! Services: a headless one per role (stable per-Pod DNS names; the cache ring uses them)
//! and a ClusterIP one for the client-facing batcher and index.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::SkyVault;
use crate::naming::{self, GRPC_PORT, HTTP_PORT, Role};

fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        // Tells meshes and gateways the port speaks HTTP/2 gRPC.
        app_protocol: (name == "grpc").then(|| "kubernetes.io/h2c".into()),
        ..ServicePort::default()
    }
}

/// `NAME-ROLE-headless`: DNS for each Pod. The cache's publishes Pods before they are ready,
/// so the ring of cache names is stable while Pods start. The batcher's and the index's list
/// ready Pods only: they are the Services for client-side balancing (a gRPC client resolving
/// `NAME-index-headless` gets every ready index and spreads its calls, where the ClusterIP
/// Service keeps one connection on one Pod).
pub fn headless_service(sv: &SkyVault, role: Role) -> Service {
    Service {
        metadata: naming::child_meta(sv, naming::headless_name(sv, role), role.as_str()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(naming::selector_labels(sv, role.as_str())),
            publish_not_ready_addresses: Some(role == Role::Cache),
            ports: Some(vec![port("grpc", GRPC_PORT), port("http", HTTP_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// `NAME-batcher` / `NAME-index`: load-balanced gRPC entry point for clients. The index's
/// also carries its HTTP port: the operator reads compaction debt there (`GET /lsm`) from
/// whichever index is ready.
pub fn client_service(sv: &SkyVault, role: Role) -> Service {
    let mut ports = vec![port("grpc", GRPC_PORT)];
    if role == Role::Index {
        ports.push(port("http", HTTP_PORT));
    }
    Service {
        metadata: naming::child_meta(sv, naming::role_name(sv, role), role.as_str()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(naming::selector_labels(sv, role.as_str())),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Every Service of a SkyVault.
pub fn services(sv: &SkyVault) -> Vec<Service> {
    let mut out: Vec<Service> = Role::ALL.iter().map(|r| headless_service(sv, *r)).collect();
    out.extend(
        Role::ALL
            .iter()
            .filter(|r| r.has_client_service())
            .map(|r| client_service(sv, *r)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::sample;

    fn names(svcs: &[Service]) -> Vec<String> {
        svcs.iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn headless_for_each_role_and_client_for_batcher_and_index() {
        let svcs = services(&sample());
        assert_eq!(
            names(&svcs),
            vec![
                "vault-batcher-headless",
                "vault-index-headless",
                "vault-cache-headless",
                "vault-batcher",
                "vault-index"
            ]
        );
    }

    #[test]
    fn headless_service_selects_role_and_publishes_not_ready() {
        let svc = headless_service(&sample(), Role::Cache);
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(
            spec.selector.unwrap()["app.kubernetes.io/component"],
            "cache"
        );
        let ports: Vec<_> = spec
            .ports
            .unwrap()
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.port))
            .collect();
        assert_eq!(ports, vec![("grpc".into(), 50051), ("http".into(), 9090)]);
    }

    #[test]
    fn client_balancing_headless_services_list_only_ready_pods() {
        for role in [Role::Batcher, Role::Index] {
            let spec = headless_service(&sample(), role).spec.unwrap();
            assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
            assert_eq!(spec.publish_not_ready_addresses, Some(false), "{role:?}");
        }
    }

    #[test]
    fn client_services_expose_grpc_and_the_index_also_http() {
        let svc = client_service(&sample(), Role::Index);
        assert_eq!(svc.metadata.name.as_deref(), Some("vault-index"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert!(spec.cluster_ip.is_none(), "allocated by the API server");
        let ports = spec.ports.unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].port, 50051);
        assert_eq!(
            ports[0].target_port,
            Some(IntOrString::String("grpc".into()))
        );
        // The operator reads /lsm here (naming::DEFAULT_LSM_URL_TEMPLATE).
        assert_eq!(ports[1].port, 9090);
        assert_eq!(
            ports[1].target_port,
            Some(IntOrString::String("http".into()))
        );
        assert_eq!(
            spec.selector.unwrap()["app.kubernetes.io/component"],
            "index"
        );
        let batcher = client_service(&sample(), Role::Batcher).spec.unwrap();
        let ports: Vec<_> = batcher.ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, vec![50051]);
    }
}

use super::*;

fn bearer(token: &str) -> http::HeaderValue {
    http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
}

fn lines(text: &[&str]) -> Vec<String> {
    text.iter().map(|l| l.to_string()).collect()
}

const START: &str = "/cairn.v1.ExecutionService/StartExecution";
const POLL: &str = "/cairn.v1.WorkerService/PollTasks";
const LIST: &str = "/cairn.v1.WorkerService/ListWorkers";

#[test]
fn each_kind_of_token_opens_only_its_own_methods() {
    let tokens = Tokens::new(vec!["c1".into()], vec!["w1".into()]);
    assert!(tokens.check(START, Some(&bearer("c1"))).is_ok());
    assert!(tokens.check(LIST, Some(&bearer("c1"))).is_ok());
    assert!(tokens.check(POLL, Some(&bearer("w1"))).is_ok());
    let code = |p, t: Option<&str>| tokens.check(p, t.map(bearer).as_ref()).unwrap_err().code();
    assert_eq!(code(START, Some("w1")), tonic::Code::PermissionDenied);
    assert_eq!(code(POLL, Some("c1")), tonic::Code::PermissionDenied);
    assert_eq!(code(START, Some("nope")), tonic::Code::Unauthenticated);
    assert_eq!(code(POLL, None), tonic::Code::Unauthenticated);
    assert!(tokens.check("/grpc.health.v1.Health/Check", None).is_ok());
}

#[test]
fn no_tokens_means_no_authentication() {
    let tokens = Tokens::new(vec![" ".into()], Vec::new());
    assert!(!tokens.enabled());
    assert!(tokens.check(POLL, None).is_ok());
}

#[test]
fn roles_and_namespaces_come_from_the_token_line() {
    let mut tokens = Tokens::default();
    tokens
        .add_lines(
            &lines(&[
                "plain",
                "bound namespace=a,b",
                "boss role=admin",
                "  ",
                "w role=worker",
            ]),
            TokenKind::Client,
        )
        .unwrap();
    let caller = |t: &str, p: &str| tokens.check(p, Some(&bearer(t)));
    assert!(caller("plain", START).unwrap().admits("anything"));
    let bound = caller("bound", START).unwrap();
    assert!(bound.admits("a") && bound.admits("b") && !bound.admits("c"));
    // Operator reads: admin, and the unbound client token as before; not a bound one.
    assert!(caller("plain", LIST).is_ok());
    assert!(caller("boss", LIST).is_ok());
    assert_eq!(
        caller("bound", LIST).unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    // Admin calls: admin only. A method without a rule is one.
    let delete = "/cairn.v1.ExecutionService/NoSuchRpcYet";
    assert!(caller("boss", delete).is_ok());
    assert_eq!(
        caller("plain", delete).unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    assert!(caller("w", POLL).is_ok());
    assert_eq!(
        caller("w", START).unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
}

#[test]
fn a_bad_token_line_is_refused_naming_the_fix() {
    for (line, says) in [
        ("t role=root", "role `root` is unknown"),
        ("t namespace=A", "namespace `A` is invalid"),
        ("t namespace=a,,b", "namespace `` is invalid"),
        ("t scope=a", "`scope=a` is not understood"),
        ("t namespace=a role=worker", "remove `namespace=`"),
        ("namespace=a", "starts with the token"),
    ] {
        let err = Tokens::default()
            .add_lines(&lines(&[line]), TokenKind::Client)
            .unwrap_err();
        assert!(err.contains(says), "{line}: {err}");
    }
}

#[test]
fn every_rpc_of_the_api_has_an_access_rule() {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(crate::api::pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut missing = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                let ruled = METHODS.iter().any(|(s, m, _)| format!("{s}{m}") == path);
                if !ruled {
                    missing.push(path);
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "RPCs without a line in METHODS: {missing:?}"
    );
}

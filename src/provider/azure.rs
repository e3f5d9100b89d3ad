//! Azure OpenAI: the OpenAI wire format, with the model in the path.
//!
//! Azure addresses a *deployment*, not a model:
//! `/openai/deployments/{deployment}/chat/completions?api-version=…`. The
//! deployment is what runs, whatever the body's `model` says, so it is the
//! call's model for policy and pricing. The newer
//! `/openai/v1/chat/completions` form names the model (deployment) in the
//! body like OpenAI does. Bodies, responses and streams are OpenAI's; see
//! [`openai`](super::openai).

/// The deployment named by a `…/deployments/{name}/…` path, given its
/// decoded, non-empty segments. The name must be followed by an endpoint.
pub(crate) fn deployment<'p>(segments: &[&'p str]) -> Option<&'p str> {
    let at = segments
        .iter()
        .position(|segment| segment.eq_ignore_ascii_case("deployments"))?;
    let name = segments.get(at + 1)?;
    // `deployments/{name}` alone is the deployment resource, not a call.
    (segments.len() > at + 2).then_some(*name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_needs_an_endpoint_after_it() {
        assert_eq!(
            deployment(&["openai", "deployments", "gpt4o", "chat", "completions"]),
            Some("gpt4o")
        );
        assert_eq!(deployment(&["openai", "deployments", "gpt4o"]), None);
        assert_eq!(deployment(&["openai", "v1", "chat", "completions"]), None);
    }
}

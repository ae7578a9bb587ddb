//! What `POST /api/generate-content` accepts, checked field by field; each
//! error names the field to fix.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Invalid, invalid};

/// Longest prompt, system text or message, in characters.
pub const MAX_TEXT: usize = 32 * 1024;
/// Most messages in one conversation.
pub const MAX_MESSAGES: usize = 64;
/// Most tokens a client may ask the model to generate.
pub const MAX_TOKENS: u32 = 4096;
/// Tokens generated when the request does not say.
pub const DEFAULT_MAX_TOKENS: u32 = 256;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user.
    User,
    /// The model, earlier in the conversation.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: Role,
    /// What was said.
    pub content: String,
}

/// The body of `POST /api/generate-content`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// The user's prompt; or give `messages` instead.
    pub prompt: Option<String>,
    /// A whole conversation, oldest first; or give `prompt` instead.
    pub messages: Option<Vec<Message>>,
    /// Instructions placed before the conversation.
    pub system: Option<String>,
    /// Most tokens to generate, 1 to 4096 [default: 256].
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2.
    pub temperature: Option<f32>,
    /// A model from the server's allow-list [default: the configured model].
    pub model: Option<String>,
    /// Stream tokens as server-sent events.
    #[serde(default)]
    pub stream: bool,
}

/// A checked request, ready for the model server.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The conversation, `system` first when given.
    pub messages: Vec<Message>,
    /// The model to ask.
    pub model: String,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Sampling temperature, when given.
    pub temperature: Option<f32>,
}

/// Checks `req` against the `allowed` models (the first is the default).
pub fn validate(req: GenerateRequest, allowed: &[String]) -> Result<Generation, Invalid> {
    let mut messages = Vec::new();
    if let Some(system) = req.system {
        check_text("system", &system)?;
        messages.push(Message {
            role: Role::System,
            content: system,
        });
    }
    match (req.prompt, req.messages) {
        (Some(_), Some(_)) => {
            return Err(invalid("prompt", "give `prompt` or `messages`, not both"));
        }
        (None, None) => {
            return Err(invalid("prompt", "`prompt` is required (or `messages`)"));
        }
        (Some(prompt), None) => {
            check_text("prompt", &prompt)?;
            messages.push(Message {
                role: Role::User,
                content: prompt,
            });
        }
        (None, Some(list)) => {
            if list.is_empty() {
                return Err(invalid(
                    "messages",
                    "`messages` must hold at least one message",
                ));
            }
            if list.len() > MAX_MESSAGES {
                return Err(invalid(
                    "messages",
                    format!("at most {MAX_MESSAGES} messages, got {}", list.len()),
                ));
            }
            for (i, m) in list.iter().enumerate() {
                check_text(&format!("messages[{i}].content"), &m.content)?;
            }
            if list.last().map(|m| m.role) != Some(Role::User) {
                return Err(invalid(
                    "messages",
                    "the last message must be the user's (role `user`)",
                ));
            }
            messages.extend(list);
        }
    }
    let max_tokens = req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if !(1..=MAX_TOKENS).contains(&max_tokens) {
        return Err(invalid(
            "max_tokens",
            format!("must be between 1 and {MAX_TOKENS}, got {max_tokens}"),
        ));
    }
    if let Some(t) = req.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(invalid(
            "temperature",
            format!("must be between 0 and 2, got {t}"),
        ));
    }
    let model = match req.model {
        None => allowed.first().cloned().unwrap_or_default(),
        Some(m) if allowed.contains(&m) => m,
        Some(m) => {
            return Err(invalid(
                "model",
                format!("{m:?} is not allowed here; allowed: {}", allowed.join(", ")),
            ));
        }
    };
    Ok(Generation {
        messages,
        model,
        max_tokens,
        temperature: req.temperature,
    })
}

fn check_text(field: &str, text: &str) -> Result<(), Invalid> {
    if text.trim().is_empty() {
        return Err(invalid(field, format!("`{field}` must not be empty")));
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT {
        return Err(invalid(
            field,
            format!("at most {MAX_TEXT} characters, got {chars}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> GenerateRequest {
        serde_json::from_value(json).expect("a well-formed request")
    }

    fn allowed() -> Vec<String> {
        vec!["smollm2".into(), "gpt-4o-mini".into()]
    }

    #[test]
    fn a_prompt_becomes_a_user_message_after_the_system_text() {
        let g = validate(
            request(serde_json::json!({"prompt": "Hi", "system": "Be brief", "temperature": 0.5})),
            &allowed(),
        )
        .expect("valid");
        assert_eq!(
            g.messages,
            [
                Message {
                    role: Role::System,
                    content: "Be brief".into()
                },
                Message {
                    role: Role::User,
                    content: "Hi".into()
                },
            ]
        );
        assert_eq!(g.model, "smollm2");
        assert_eq!(g.max_tokens, DEFAULT_MAX_TOKENS);
        assert_eq!(g.temperature, Some(0.5));
    }

    #[test]
    fn each_rule_names_its_field() {
        let long = "x".repeat(MAX_TEXT + 1);
        let cases = [
            (serde_json::json!({}), "prompt"),
            (serde_json::json!({"prompt": "  "}), "prompt"),
            (serde_json::json!({"prompt": long}), "prompt"),
            (
                serde_json::json!({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}),
                "prompt",
            ),
            (serde_json::json!({"messages": []}), "messages"),
            (
                serde_json::json!({"messages": [{"role": "user", "content": ""}]}),
                "messages[0].content",
            ),
            (
                serde_json::json!({"messages": [{"role": "assistant", "content": "a"}]}),
                "messages",
            ),
            (serde_json::json!({"prompt": "a", "system": ""}), "system"),
            (
                serde_json::json!({"prompt": "a", "max_tokens": 0}),
                "max_tokens",
            ),
            (
                serde_json::json!({"prompt": "a", "max_tokens": 5000}),
                "max_tokens",
            ),
            (
                serde_json::json!({"prompt": "a", "temperature": 2.5}),
                "temperature",
            ),
            (
                serde_json::json!({"prompt": "a", "temperature": -0.1}),
                "temperature",
            ),
            (
                serde_json::json!({"prompt": "a", "model": "gpt-5"}),
                "model",
            ),
        ];
        for (json, field) in cases {
            let err = validate(request(json.clone()), &allowed()).expect_err("invalid");
            assert_eq!(err.field, field, "{json}: {}", err.message);
        }
    }

    #[test]
    fn a_model_on_the_allow_list_is_used() {
        let g = validate(
            request(serde_json::json!({"prompt": "a", "model": "gpt-4o-mini"})),
            &allowed(),
        )
        .expect("valid");
        assert_eq!(g.model, "gpt-4o-mini");
    }
}

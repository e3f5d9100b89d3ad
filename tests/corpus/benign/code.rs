// Why does this not compile? error[E0502]: cannot borrow `tokens` as mutable
use std::collections::HashMap;

const TOKEN_HEADER: &str = "authorization";
const PASSWORD_FIELD: &str = "password";
const SECRET_LEN: usize = 32;

pub struct Tokenizer {
    tokens: Vec<String>,
    token_ids: HashMap<String, u32>,
}

impl Tokenizer {
    pub fn next_token(&mut self) -> Option<&str> {
        let token = self.tokens.pop()?;
        let id = self.token_ids.len() as u32;
        self.token_ids.insert(token.clone(), id);
        self.tokens.last().map(|s| s.as_str())
    }
}

fn check(password: &str, secret: &[u8; SECRET_LEN]) -> bool {
    let api_key = std::env::var("API_KEY").unwrap_or_default();
    let token = request.headers().get(TOKEN_HEADER);
    constant_time_eq(password.as_bytes(), &secret[..]) && !api_key.is_empty() && token.is_some()
}

#[test]
fn sha256_of_empty() {
    assert_eq!(
        hex(&Sha256::digest(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let id = uuid!("67e55044-10b1-426f-9247-bb680e5fe0c8");
    let commit = "9fceb02d0ae598e95dc970b74767f19372d61af8";
}

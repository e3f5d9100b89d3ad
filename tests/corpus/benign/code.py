"""Lorem ipsum client. Can you add retries to this?"""
import os
import hashlib
import secrets

API_KEY = os.environ["OPENAI_API_KEY"]
token = os.getenv("GITHUB_TOKEN", "")
password = getpass.getpass("Password: ")
max_tokens = 1024
secret_name = "prod/db/password"
TOKEN_URL = "https://oauth2.googleapis.com/token"


def hash_password(password: str, salt: bytes) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 600_000).hex()


def new_api_key() -> str:
    # 32 random bytes, shown to the user once
    return "lk_" + secrets.token_urlsafe(32)


def tokenize(text):
    tokens = text.split()
    token_count = len(tokens)
    return tokens, token_count


class Session:
    def __init__(self, access_token=None, refresh_token=None):
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.headers = {"Authorization": f"Bearer {access_token}"}


# SHA-256 test vector: "abc"
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
assert hashlib.sha256(b"abc").hexdigest() == ABC_SHA256
UUID_NAMESPACE = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"

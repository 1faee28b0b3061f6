"""STS and IAM Credentials request parsing: pure functions, exercised with properties."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator import iam, sts
from emulator.errors import EmulatorError
from emulator.world import DEFAULT_SCOPES

if TYPE_CHECKING:
    from collections.abc import Callable

CLUSTER_URL = (
    "https://container.googleapis.com/v1/projects/mesh-demo/locations/us-central1-c/clusters/istio"
)
AUDIENCE = f"identitynamespace:mesh-demo.svc.id.goog:{CLUSTER_URL}"
POOL_AUDIENCE = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/mesh-demo.svc.id.goog/providers/istio"

FORM = {
    "grant_type": sts.GRANT_TYPE_TOKEN_EXCHANGE,
    "subject_token": "eyJ.header.sig",
    "subject_token_type": sts.TOKEN_TYPE_JWT,
    "requested_token_type": sts.TOKEN_TYPE_ACCESS_TOKEN,
    "audience": AUDIENCE,
    "scope": "https://www.googleapis.com/auth/cloud-platform",
}
CAMEL = {
    "grantType": FORM["grant_type"],
    "subjectToken": FORM["subject_token"],
    "subjectTokenType": FORM["subject_token_type"],
    "requestedTokenType": FORM["requested_token_type"],
    "audience": FORM["audience"],
    "scope": FORM["scope"],
}
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "",
        "text/plain",
        "application/JSON; charset=utf-8",
    ]
)
TOKEN_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)


def form_body(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


def outcome(call: Callable[[], object]) -> object:
    """The call's result, or the EmulatorError it raised (anything else propagates)."""
    try:
        return call()
    except EmulatorError as exc:
        return exc


class TestTokenRequest:
    def test_form_body_as_google_auth_sends_it(self) -> None:
        """google-auth's snake_case form parses into the request it means."""
        parsed = sts.parse_token_request("application/x-www-form-urlencoded", form_body(FORM))
        assert parsed == sts.TokenRequest(
            subject_token="eyJ.header.sig",
            subject_token_type=sts.TOKEN_TYPE_JWT,
            audience=sts.IdentityNamespace("mesh-demo.svc.id.goog", CLUSTER_URL),
            audience_text=AUDIENCE,
            scopes=("https://www.googleapis.com/auth/cloud-platform",),
        )

    def test_json_body_without_content_type_as_the_original_sends_it(self) -> None:
        """The Go krun's camelCase JSON, sent with no Content-Type, parses the same as the form."""
        expected = sts.parse_token_request("application/x-www-form-urlencoded", form_body(FORM))
        assert sts.parse_token_request("", json.dumps(CAMEL).encode()) == expected
        assert (
            sts.parse_token_request("application/json; charset=utf-8", json.dumps(CAMEL).encode())
            == expected
        )

    def test_json_accepts_proto_field_names(self) -> None:
        """Proto JSON allows the snake_case field names too."""
        parsed = sts.parse_token_request("application/json", json.dumps(FORM).encode())
        assert parsed.audience_text == AUDIENCE

    def test_missing_scope_means_cloud_platform(self) -> None:
        """Without a scope the federated token gets cloud-platform."""
        fields = {k: v for k, v in FORM.items() if k != "scope"}
        assert (
            sts.parse_token_request("application/x-www-form-urlencoded", form_body(fields)).scopes
            == DEFAULT_SCOPES
        )

    def test_id_token_subject_type_is_accepted(self) -> None:
        """An OIDC id_token subject type is accepted like jwt."""
        fields = {**FORM, "subject_token_type": sts.TOKEN_TYPE_ID_TOKEN}
        parsed = sts.parse_token_request("application/x-www-form-urlencoded", form_body(fields))
        assert parsed.subject_token_type == sts.TOKEN_TYPE_ID_TOKEN

    @pytest.mark.parametrize(
        "missing",
        ["grant_type", "subject_token", "subject_token_type", "requested_token_type", "audience"],
    )
    def test_each_missing_field_is_named(self, missing: str) -> None:
        """A missing required field is invalid_request naming that field."""
        fields = {k: v for k, v in FORM.items() if k != missing}
        with pytest.raises(sts.StsError, match=missing) as caught:
            sts.parse_token_request("application/x-www-form-urlencoded", form_body(fields))
        assert caught.value.error == "invalid_request"

    @pytest.mark.parametrize(
        ("field", "value", "error"),
        [
            ("grant_type", "client_credentials", "unsupported_grant_type"),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:saml2", "invalid_request"),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
                "invalid_request",
            ),
            ("audience", "mesh-demo.svc.id.goog", "invalid_request"),
            ("audience", "https:" + POOL_AUDIENCE, "invalid_request"),
            ("audience", "identitynamespace:mesh-demo.svc.id.goog", "invalid_request"),
        ],
    )
    def test_bad_values_get_oauth_codes(self, field: str, value: str, error: str) -> None:
        """Each wrong value is refused with the OAuth error code the real STS uses."""
        with pytest.raises(sts.StsError) as caught:
            sts.parse_token_request(
                "application/x-www-form-urlencoded", form_body({**FORM, field: value})
            )
        assert caught.value.error == error

    def test_repeated_form_parameter_is_refused(self) -> None:
        """RFC 6749: a parameter must not appear twice."""
        body = form_body(FORM) + b"&subject_token=other"
        with pytest.raises(sts.StsError, match="more than once"):
            sts.parse_token_request("application/x-www-form-urlencoded", body)

    def test_unknown_form_parameters_are_ignored_but_unknown_json_fields_are_not(self) -> None:
        """Forms follow OAuth (ignore extras); JSON follows proto (an unknown name is an error)."""
        sts.parse_token_request(
            "application/x-www-form-urlencoded", form_body({**FORM, "client_id": "x"})
        )
        with pytest.raises(sts.StsError, match="Unknown field 'clientId'"):
            sts.parse_token_request(
                "application/json", json.dumps({**CAMEL, "clientId": "x"}).encode()
            )

    def test_unsupported_content_type(self) -> None:
        """A body in another media type is invalid_request naming the type."""
        with pytest.raises(sts.StsError, match="text/plain"):
            sts.parse_token_request("text/plain", form_body(FORM))

    @given(
        subject_token=TOKEN_TEXT,
        scopes=st.lists(st.from_regex(r"https://[a-z./]{1,20}", fullmatch=True), max_size=3),
        camel=st.booleans(),
    )
    def test_json_and_form_encodings_agree(
        self, subject_token: str, scopes: list[str], camel: bool
    ) -> None:
        """Any request encoded as a form and as JSON parses to the same TokenRequest."""
        fields = {**FORM, "subject_token": subject_token, "scope": " ".join(scopes)}
        names = dict(zip(FORM, CAMEL, strict=True)) if camel else {k: k for k in FORM}
        document = {names[k]: v for k, v in fields.items()}
        from_form = sts.parse_token_request("application/x-www-form-urlencoded", form_body(fields))
        assert (
            sts.parse_token_request("application/json", json.dumps(document).encode()) == from_form
        )
        assert from_form.subject_token == subject_token
        assert from_form.scopes == (tuple(scopes) or DEFAULT_SCOPES)

    @given(content_type=CONTENT_TYPES, body=st.binary(max_size=200))
    def test_garbage_bytes_raise_only_sts_error(self, content_type: str, body: bytes) -> None:
        """Arbitrary bytes in any media type give a TokenRequest or StsError, never another exception."""
        result = outcome(lambda: sts.parse_token_request(content_type, body))
        if isinstance(result, sts.StsError):
            assert result.error in {"invalid_request", "unsupported_grant_type"}
            assert result.description
        else:
            assert isinstance(result, sts.TokenRequest)

    @given(
        document=JSON_VALUES
        | st.dictionaries(st.sampled_from([*CAMEL, *FORM, "x"]), JSON_VALUES, max_size=6)
    )
    def test_garbage_json_raises_only_sts_error(self, document: Any) -> None:
        """Any JSON document, including objects with the right names and wrong types, is handled."""
        with pytest.raises(sts.StsError):
            sts.parse_token_request("application/json", json.dumps(document).encode())

    @given(pairs=st.dictionaries(st.sampled_from([*FORM, "x"]), st.text(max_size=30), max_size=6))
    def test_garbage_forms_raise_only_sts_error(self, pairs: dict[str, str]) -> None:
        """Forms with missing or arbitrary values parse fully or raise StsError."""
        try:
            parsed = sts.parse_token_request("application/x-www-form-urlencoded", form_body(pairs))
        except sts.StsError:
            return
        assert parsed.subject_token == pairs["subject_token"]


class TestAudience:
    def test_identity_namespace(self) -> None:
        """The cluster URL keeps its own colons."""
        assert sts.parse_audience(AUDIENCE) == sts.IdentityNamespace(
            "mesh-demo.svc.id.goog", CLUSTER_URL
        )

    def test_pool_provider(self) -> None:
        """The provider's full resource name splits into number, pool and provider."""
        assert sts.parse_audience(POOL_AUDIENCE) == sts.PoolProvider(
            123456789012, "mesh-demo.svc.id.goog", "istio"
        )

    @given(st.text(max_size=120))
    def test_arbitrary_text_is_an_audience_or_invalid_request(self, text: str) -> None:
        """Any string parses or raises invalid_request."""
        result = outcome(lambda: sts.parse_audience(text))
        if isinstance(result, sts.StsError):
            assert result.error == "invalid_request"
        else:
            assert isinstance(result, sts.IdentityNamespace | sts.PoolProvider)


class TestIamBodies:
    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            (None, 3600),
            ("3600s", 3600),
            ("1s", 1),
            ("600.5s", 600),
            ({"seconds": 3600}, 3600),
            ({"seconds": "900", "nanos": 0}, 900),
        ],
    )
    def test_lifetime_forms(self, value: Any, seconds: int) -> None:
        """Both the JSON duration string and the original's object form are read as whole seconds."""
        assert iam.parse_lifetime(value) == seconds

    @pytest.mark.parametrize(
        "value",
        [
            "3601s",
            "0s",
            "3600",
            "-5s",
            "1h",
            3600,
            {"seconds": 7200},
            {"minutes": 1},
            {"seconds": True},
            {"seconds": "\u00b2"},
            {"seconds": "9" * 5000},
        ],
    )
    def test_bad_lifetimes_are_invalid_argument(self, value: Any) -> None:
        """Too long, zero, unitless or oddly shaped lifetimes are 400s."""
        with pytest.raises(iam.IamError) as caught:
            iam.parse_lifetime(value)
        assert caught.value.code == 400

    def test_access_token_request_as_the_original_sends_it(self) -> None:
        """name "", delegates null, the object lifetime: all accepted."""
        body = {
            "name": "",
            "delegates": None,
            "scope": ["https://www.googleapis.com/auth/cloud-platform"],
            "lifetime": {"seconds": 3600},
        }
        assert iam.parse_access_token_request(body) == iam.AccessTokenRequest(
            ("https://www.googleapis.com/auth/cloud-platform",), 3600, ()
        )

    def test_delegates_name_accounts(self) -> None:
        """Delegates are projects/-/serviceAccounts/ID names; anything else is a 400."""
        assert iam.parse_delegates(["projects/-/serviceAccounts/a@b.iam.gserviceaccount.com"]) == (
            "a@b.iam.gserviceaccount.com",
        )
        with pytest.raises(iam.IamError, match="delegate"):
            iam.parse_delegates(["a@b.iam.gserviceaccount.com"])

    def test_id_token_request_needs_an_audience(self) -> None:
        """generateIdToken without an audience is a 400 naming it."""
        assert iam.parse_id_token_request(
            {"audience": "https://x", "includeEmail": True}
        ) == iam.IdTokenRequest("https://x", True, ())
        with pytest.raises(iam.IamError, match="audience"):
            iam.parse_id_token_request({"includeEmail": True})

    @given(
        document=JSON_VALUES
        | st.dictionaries(
            st.sampled_from(["scope", "lifetime", "delegates", "audience", "includeEmail", "x"]),
            JSON_VALUES,
            max_size=5,
        )
    )
    def test_garbage_bodies_raise_only_iam_error(self, document: Any) -> None:
        """Any JSON body parses or raises IamError(400), for both methods."""
        parsers: list[Callable[[Any], object]] = [
            iam.parse_access_token_request,
            iam.parse_id_token_request,
        ]
        for parse in parsers:
            result = outcome(functools.partial(parse, document))
            if isinstance(result, iam.IamError):
                assert result.code == 400
            else:
                assert isinstance(result, iam.AccessTokenRequest | iam.IdTokenRequest)

    def test_expire_time_is_rfc3339_zulu_whole_seconds(self) -> None:
        """expireTime is what google-auth's strptime('%Y-%m-%dT%H:%M:%SZ') accepts."""
        assert iam.rfc3339(1_800_000_000.75) == "2027-01-15T08:00:00Z"

"""The ``signing:`` section of the fleet's config file: where the organisation's signing key is
(a PKCS#11 token, an HSM at the province's data centre, or a PKCS#12 file for a small
deployment), whether one key signs for the whole province or each unit has its own, and the
time-stamp authority (PAdES B-T) if there is one (else B-B).

The PIN or passphrase never sits in this file: it is read from an environment variable or from
a file (``pin_env`` / ``pin_file``, ``passphrase_env`` / ``passphrase_file``).

.. code-block:: yaml

    signing:
      enabled: true
      source: {type: pkcs11, module: /usr/lib/softhsm/libsofthsm2.so, token_label: sohoa,
               pin_file: /etc/sohoa/secrets/hsm.pin}
      scope: unit
      units:
        "99001": {key_label: unit-99001}
        "99002": {key_label: unit-99002, cert_label: unit-99002-2026}
      tsa_url: http://tsa.example.vn/tsr

>>> SigningConfig().enabled
False
>>> cfg = SigningConfig.model_validate({"enabled": True, "source": {"type": "pkcs12", "file": "/k/org.p12",
...     "passphrase_env": "ORG_P12_PASS"}})
>>> cfg.level, cfg.scope
('B-B', 'province')
>>> try:
...     SigningConfig.model_validate({"enabled": True})
... except ValueError as exc:
...     print(exc.errors()[0]["msg"])
Value error, signing.enabled needs a source (pkcs11 or pkcs12)
"""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _one_secret(env: str | None, file: Path | None, what: str) -> None:
    if (env is None) == (file is None):
        raise ValueError(f"give the {what} exactly one way: {what}_env (a variable's name) or {what}_file")


class Pkcs11Source(_Section):
    """A PKCS#11 token: the HSM's module, the token's label and where its user PIN is."""

    type: Literal["pkcs11"] = Field(description="A PKCS#11 token (HSM, smart card, SoftHSM2)")
    module: Path = Field(description="The token's PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so")
    token_label: str = Field(min_length=1, max_length=32, description="The token's label")
    pin_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Environment variable holding the user PIN"
    )
    pin_file: Path | None = Field(default=None, description="File holding the user PIN (mode 0600)")

    @model_validator(mode="after")
    def _pin(self) -> "Pkcs11Source":
        _one_secret(self.pin_env, self.pin_file, "pin")
        return self


class Pkcs12Source(_Section):
    """PKCS#12 files (key and certificate chain), each encrypted with the passphrase given here."""

    type: Literal["pkcs12"] = Field(description="A PKCS#12 file (.p12/.pfx), for small deployments")
    file: Path | None = Field(default=None, description="The province's PKCS#12 file (scope province)")
    passphrase_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the PKCS#12 passphrase",
    )
    passphrase_file: Path | None = Field(default=None, description="File holding the PKCS#12 passphrase (mode 0600)")

    @model_validator(mode="after")
    def _passphrase(self) -> "Pkcs12Source":
        _one_secret(self.passphrase_env, self.passphrase_file, "passphrase")
        return self


Source = Annotated[Pkcs11Source | Pkcs12Source, Field(discriminator="type")]


class KeyRef(_Section):
    """Which key signs: on a PKCS#11 token its key label (and the certificate's label, when it
    differs); with PKCS#12, the file."""

    key_label: str | None = Field(default=None, min_length=1, description="PKCS#11: the private key's label")
    cert_label: str | None = Field(
        default=None, min_length=1, description="PKCS#11: the certificate's label (default: the key's)"
    )
    file: Path | None = Field(default=None, description="PKCS#12: the file holding this key and its certificate")


class SigningConfig(_Section):
    """Signing each closed document at the fleet (PAdES), before it is delivered."""

    enabled: bool = Field(default=False, description="Sign every closed document the fleet holds, in the background")
    source: Source | None = Field(default=None, description="Where the keys are: a PKCS#11 token or PKCS#12 files")
    scope: Literal["province", "unit"] = Field(
        default="province", description="province: one key signs everything; unit: each unit code has its own key"
    )
    key: KeyRef | None = Field(
        default=None,
        description="scope province, PKCS#11: the key's label. (PKCS#12: source.file; this may name the file instead)",
    )
    units: dict[str, KeyRef] = Field(
        default_factory=dict,
        description="scope unit: the key of each unit code. A document of a unit not listed is not signed "
        "(its error says so) and waits until its unit is added",
    )
    tsa_url: str | None = Field(
        default=None, pattern=r"^https?://\S+$",
        description="RFC 3161 time-stamp authority: set, signatures are PAdES B-T; unset, B-B",
    )
    tsa_timeout_s: float = Field(default=10.0, gt=0, le=300, description="Timeout of one time-stamp request")
    interval_s: float = Field(default=30.0, ge=0.1, le=86400, description="Seconds between two signing passes")
    reason: str = Field(
        default="Số hóa hồ sơ thủ tục hành chính", max_length=200, description="The signature's stated reason"
    )
    location: str | None = Field(default=None, max_length=200, description="The signature's stated location")

    @model_validator(mode="after")
    def _keys(self) -> "SigningConfig":
        if self.enabled and self.source is None:
            raise ValueError("signing.enabled needs a source (pkcs11 or pkcs12)")
        if self.source is None:
            return self
        refs = list(self.units.values()) if self.scope == "unit" else [self.key or KeyRef()]
        if self.scope == "unit" and not self.units:
            raise ValueError("scope unit needs units: a key for each unit code")
        if self.scope == "province" and self.units:
            raise ValueError("units are for scope unit; scope province has one key")
        for ref in refs:
            if isinstance(self.source, Pkcs11Source):
                if ref.key_label is None or ref.file is not None:
                    raise ValueError("with a pkcs11 source each key is a key_label (no file)")
            elif ref.key_label is not None or ref.cert_label is not None:
                raise ValueError("with a pkcs12 source each key is a file (no key_label)")
            elif ref.file is None and (self.scope == "unit" or self.source.file is None):
                raise ValueError("with a pkcs12 source give the file (source.file, or the unit's file)")
        return self

    @property
    def level(self) -> Literal["B-B", "B-T"]:
        """The PAdES baseline level this configuration signs at."""
        return "B-T" if self.tsa_url else "B-B"

"""Device OS image recipe and signed update bundles.

``images.manifest`` is the bundle format both sides share (the builder writes it, the device's
updater checks it); ``images.bundle`` is the build command::

    python -m images.bundle keygen --out keys/
    python -m images.bundle build --kind app --version 0.2.0 --key keys/update_signing.key --out dist/
    python -m images.bundle verify dist/sohoa-app-0.2.0.bundle --public-key keys/update_signing.pub
"""

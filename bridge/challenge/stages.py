"""The stages of a sign-in's flow (the ``flows.stage`` column): where it stands, for the
pipeline's compare-and-set steps and the pages."""

ENROLL = "enroll"  # new user: scan the QR code, enter the first code
ENROLL_SAVED = "enroll_saved"  # new user: save the first recovery code
TOTP = "totp"  # known user: TOTP, or the recovery code instead
ROTATE = "rotate"  # recovery code accepted: save the replacement
REENROLL = "reenroll"  # after a recovery login: set up a new authenticator
LOCKED = "locked"
NOT_ENROLLED = "not_enrolled"  # unknown user, client does not allow enrollment
DONE = "done"  # its code issued: ended, kept a while so its page can say it is complete

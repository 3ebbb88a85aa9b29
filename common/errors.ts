/** A configuration value is wrong; the message names the key and the reason. */
export class InvalidConfigError extends Error {
  static override name = 'InvalidConfigError'
  override name = 'InvalidConfigError'
}

/** The identity key file exists but cannot be read as a private key. */
export class IdentityFileError extends Error {
  static override name = 'IdentityFileError'
  override name = 'IdentityFileError'
}

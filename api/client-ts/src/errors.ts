/** Why a client stopped for good: emitted as an `error` event, the hook's `error`. */
export class VendorPulseError extends Error {
  /** The close code that ended it, if a close did. */
  readonly closeCode: number | null;

  constructor(message: string, closeCode: number | null = null) {
    super(message);
    this.name = "VendorPulseError";
    this.closeCode = closeCode;
  }
}

/** The server refused in a way a retry cannot fix: 4000, 4003, or 4001 without a `tokenProvider`. */
export class ServerRefusedError extends VendorPulseError {
  constructor(message: string, closeCode: number) {
    super(message, closeCode);
    this.name = "ServerRefusedError";
  }
}

/** `maxAttempts` connection attempts failed in a row (or the token provider failed). */
export class ReconnectFailedError extends VendorPulseError {
  constructor(message: string, closeCode: number | null = null) {
    super(message, closeCode);
    this.name = "ReconnectFailedError";
  }
}

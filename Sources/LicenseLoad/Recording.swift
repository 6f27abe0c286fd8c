import Foundation
import LicenseWire
import SwiftProtobuf

/// A recorded client scenario: the frames each user sent, in order, as JSON Lines.
///
/// The first line is a header; each further line is one client frame:
///
///     {"format":"coditect-license-recording","version":1,"users":2,"description":"…"}
///     {"user":0,"at_ms":0,"phase":"setup","frame":{"acquire":{"license_id":"acme-pro",…}},"session_id":"ses_…"}
///     {"user":0,"at_ms":300000,"phase":"loop","frame":{"heartbeat":{"session_id":"ses_…"}}}
///
/// `frame` is a `ClientFrame` in protobuf JSON (field names as in the `.proto`). `session_id`,
/// on acquires, is the session the recorded server answered with, so that replay can map the
/// recorded session ids in later frames to the ones its own server returns. `phase` is `setup`
/// (once per virtual user, before the loop), `loop` (repeated) or `teardown` (once, at the end).
/// `at_ms` is the time since the user's first frame (kept for reference; replay paces by its
/// own mode). `Hello` frames are not recorded: replay signs each connection in itself.
public struct Recording: Sendable, Equatable {
    public enum Phase: String, Codable, Sendable {
        case setup, loop, teardown
    }

    public struct Entry: Sendable, Equatable {
        public var user: Int
        public var atMs: UInt64
        public var phase: Phase
        public var call: ClientFrame.OneOf_Call
        /// With an acquire: the session id the recorded server answered.
        public var sessionID: String?

        public init(user: Int, atMs: UInt64 = 0, phase: Phase = .loop, call: ClientFrame.OneOf_Call, sessionID: String? = nil) {
            self.user = user
            self.atMs = atMs
            self.phase = phase
            self.call = call
            self.sessionID = sessionID
        }
    }

    public static let format = "coditect-license-recording"
    public static let version = 1

    public var description: String
    public var entries: [Entry]

    public init(description: String, entries: [Entry]) {
        self.description = description
        self.entries = entries
    }

    /// How many users the recording holds.
    public var users: Int { (entries.map(\.user).max() ?? -1) + 1 }

    /// One user's script by phase.
    public func script(user: Int) -> (setup: [Entry], loop: [Entry], teardown: [Entry]) {
        let own = entries.filter { $0.user == user }
        return (own.filter { $0.phase == .setup }, own.filter { $0.phase == .loop }, own.filter { $0.phase == .teardown })
    }

    // MARK: JSON Lines

    private struct Header: Codable {
        var format: String
        var version: Int
        var users: Int
        var description: String
    }

    /// Encodes the recording as JSON Lines.
    public func encoded() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        func json(_ value: some Encodable) throws -> String { String(decoding: try encoder.encode(value), as: UTF8.self) }
        var lines = [try json(Header(format: Self.format, version: Self.version, users: users, description: description))]
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        for entry in entries {
            var frame = ClientFrame()
            frame.call = entry.call
            var line = "{\"at_ms\":\(entry.atMs),\"frame\":\(try frame.jsonString(options: options)),\"phase\":\(try json(entry.phase.rawValue))"
            if let session = entry.sessionID { line += ",\"session_id\":\(try json(session))" }
            line += ",\"user\":\(entry.user)}"
            lines.append(line)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Decodes JSON Lines; errors name the line.
    public init(decoding text: String) throws {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true)[...]
        guard let first = lines.popFirst(),
              let header = try? JSONDecoder().decode(Header.self, from: Data(first.utf8)),
              header.format == Self.format
        else { throw RecordingError("line 1 is not a \(Self.format) header") }
        guard header.version == Self.version else { throw RecordingError("recording version \(header.version); this tool reads version \(Self.version)") }
        var entries: [Entry] = []
        for (offset, text) in lines.enumerated() {
            let number = offset + 2
            guard let line = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                  let user = line["user"] as? Int, user >= 0,
                  let phaseName = line["phase"] as? String, let phase = Phase(rawValue: phaseName),
                  let frameObject = line["frame"] as? [String: Any]
            else { throw RecordingError("line \(number) is not a recording entry (user, phase, frame)") }
            guard let frameData = try? JSONSerialization.data(withJSONObject: frameObject),
                  let frame = try? ClientFrame(jsonUTF8Data: frameData), let call = frame.call
            else { throw RecordingError("line \(number): frame is not a ClientFrame with a call") }
            if case .hello = call { throw RecordingError("line \(number): Hello frames are not replayed; remove it") }
            let atMs = (line["at_ms"] as? NSNumber)?.uint64Value ?? 0
            entries.append(Entry(user: user, atMs: atMs, phase: phase, call: call, sessionID: line["session_id"] as? String))
        }
        guard !entries.isEmpty else { throw RecordingError("the recording holds no frames") }
        self.init(description: header.description, entries: entries)
    }
}

/// A recording that cannot be read.
public struct RecordingError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

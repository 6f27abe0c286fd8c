import LicenseCore
import LicenseWire
import SwiftProtobuf

extension Dispatcher {
    /// The smallest frame limit a client may announce in `Hello`: every answer but a list
    /// fits in it, and a list page holds at least one item.
    public static let minimumAnswerLimit = 4096

    /// The largest answer for a client that announced `announced` bytes in `Hello` (0: the
    /// protocol default): the smaller of that and this server's limit.
    public func answerLimit(announced: UInt32) -> Int {
        min(maxFrameBytes, announced == 0 ? WireProtocol.defaultMaxFrameBytes : Int(announced))
    }

    /// The items of `slice` that fit in an answer of `limit` bytes, in order, and the token of
    /// the page after the last of them (empty when nothing follows). An item too large for a
    /// frame on its own is refused with `ANSWER_TOO_LARGE`, never sent.
    static func page<Item, Wire: SwiftProtobuf.Message>(
        _ slice: PageSlice<Item>, as wire: (Item) -> Wire, within limit: Int, token: (Item) -> String
    ) throws -> ([Wire], String) {
        let items = slice.items.map(wire)
        let fitting = try AnswerPage.fitting(items, frameLimit: limit)
        guard fitting > 0 || items.isEmpty else {
            throw LicenseError(.resourceExhausted, .answerTooLarge, "one item of this list does not fit in a frame of \(limit) bytes; announce a larger max_frame_bytes in Hello")
        }
        let more = fitting < items.count || slice.hasMore
        return (Array(items.prefix(fitting)), more ? token(slice.items[fitting - 1]) : "")
    }
}

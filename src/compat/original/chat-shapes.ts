/**
 * The chat message in the shape the app reads, from the core's message
 * read model: in the history and send answers (with delivery and read state from the read
 * horizons) and pushed on the app's socket (as just sent). Pure mapping.
 */
import { Type } from '@sinclair/typebox';
import { Literals } from '../../lib/schemas.js';
import type { ReadHorizon } from '../../modules/chat/repository.js';
import type { ChatMessageJson } from '../../modules/chat/schemas.js';

const NullableString = Type.Union([Type.String(), Type.Null()]);

/** The message object of the app's `types/chat.ts`. */
export const AppMessage = Type.Object(
  {
    id: Type.Integer(),
    appointment_id: Type.Integer(),
    session_id: Type.Union([Type.Integer(), Type.Null()]),
    session_context: NullableString,
    sender_id: Type.Integer(),
    sender_name: Type.String(),
    message: Type.String(),
    message_type: Literals(['text', 'image', 'voice'] as const),
    media_url: NullableString,
    temp_id: NullableString,
    reply_to_id: Type.Union([Type.Integer(), Type.Null()]),
    created_at: Type.String(),
    timestamp: Type.String(),
    delivery_status: Literals(['sent', 'delivered', 'read'] as const),
    read_by: Type.Array(Type.Object({ user_id: Type.Integer(), user_name: Type.String(), read_at: Type.String() })),
  },
  { additionalProperties: true },
);

/** What a reader knows of a conversation: the room the app keys it by, who reads, and who has read what. */
export interface ReadView {
  room: number;
  viewerId: number;
  horizons: ReadHorizon[];
}

/**
 * The app's message from the core's. With a reader's view: its room number, and `read` when the other
 * party's horizon passed it, else `sent` (the viewer's own) or `delivered`. Without (a push on the
 * socket, as just sent): the appointment's number (the session's before it has one), `sent`.
 */
export function appMessageJson(m: ChatMessageJson, view?: ReadView) {
  const readers = view ? view.horizons.filter((h) => h.user_id !== m.sender_id && h.last_read_message_id >= m.id) : [];
  const delivery = !view || (readers.length === 0 && m.sender_id === view.viewerId) ? 'sent' : readers.length > 0 ? 'read' : 'delivered';
  return {
    id: m.id,
    appointment_id: view ? view.room : (m.appointment_id ?? m.session_id),
    session_id: m.session_id,
    session_context: m.session_context,
    sender_id: m.sender_id,
    sender_name: m.sender_name,
    message: m.body,
    message_type: m.type,
    media_url: m.media_url,
    temp_id: m.client_message_id,
    reply_to_id: m.reply_to_message_id,
    created_at: m.created_at,
    timestamp: m.created_at,
    delivery_status: delivery as 'sent' | 'delivered' | 'read',
    read_by: readers.map((h) => ({ user_id: h.user_id, user_name: h.user_name, read_at: h.read_at.toISOString() })),
  };
}

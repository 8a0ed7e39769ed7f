/**
 * The chat message in the shape the app reads (reference §4.1, §9.3), from the core's message
 * read model. Pure mapping.
 */
import type { ChatMessageJson } from '../../modules/chat/schemas.js';

/** A stored message as the app reads it, as pushed on its socket (no read state yet). */
export function appMessageJson(m: ChatMessageJson) {
  return {
    id: m.id,
    appointment_id: m.appointment_id ?? m.session_id,
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
    delivery_status: 'sent',
    read_by: [] as unknown[],
  };
}

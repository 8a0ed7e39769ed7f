/**
 * The one access gate: "may this user touch this appointment / session?". Participants may;
 * admins may read (and act where a route allows it); everybody else gets 403.
 */
import { forbidden } from '../lib/errors.js';
import type { Role } from '../db/types.js';

export interface Actor {
  id: number;
  role: Role;
}

export interface Parties {
  patient_id: number;
  doctor_id: number;
}

export type Access = 'patient' | 'doctor' | 'admin' | null;

export function accessOf(actor: Actor, parties: Parties): Access {
  if (actor.role === 'patient' && actor.id === parties.patient_id) return 'patient';
  if (actor.role === 'doctor' && actor.id === parties.doctor_id) return 'doctor';
  if (actor.role === 'admin') return 'admin';
  return null;
}

export const isParticipant = (actor: Actor, parties: Parties) => {
  const a = accessOf(actor, parties);
  return a === 'patient' || a === 'doctor';
};

/** Participants and admins may read. */
export function assertCanRead(actor: Actor, parties: Parties): Access {
  const a = accessOf(actor, parties);
  if (!a) throw forbidden('You are not a participant of this consultation');
  return a;
}

/** Only the two participants may act (send, end, join, bill). */
export function assertParticipant(actor: Actor, parties: Parties): 'patient' | 'doctor' {
  const a = accessOf(actor, parties);
  if (a !== 'patient' && a !== 'doctor') throw forbidden('Only the participants may do this');
  return a;
}

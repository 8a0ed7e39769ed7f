import { Type } from '@sinclair/typebox';
import { Id, IsoDateTime, Text } from '../../lib/schemas.js';

export const RoleSchema = Type.Union([Type.Literal('patient'), Type.Literal('doctor'), Type.Literal('admin')]);

export const UserOut = Type.Object({
  id: Id,
  role: RoleSchema,
  name: Type.String(),
  country: Type.Union([Type.String(), Type.Null()]),
  timezone: Type.String(),
  created_at: Type.Optional(IsoDateTime),
  deactivated_at: Type.Optional(Type.Union([IsoDateTime, Type.Null()])),
});

export const CreateUserBody = Type.Object(
  {
    role: RoleSchema,
    name: Text({ minLength: 1, maxLength: 200 }),
    country: Type.Optional(Type.Union([Text({ maxLength: 100 }), Type.Null()])),
    timezone: Type.Optional(Text({ minLength: 1, maxLength: 64 })),
  },
  { additionalProperties: false },
);

export const PlanOut = Type.Object({
  id: Id,
  name: Type.String(),
  text_credits: Type.Integer(),
  voice_credits: Type.Integer(),
  video_credits: Type.Integer(),
  validity_days: Type.Integer(),
  price_minor: Type.Integer(),
  currency: Type.String(),
});

export const GrantBody = Type.Object(
  {
    user_id: Id,
    plan_id: Id,
    payment_reference: Text({ minLength: 1, maxLength: 200 }),
  },
  { additionalProperties: false },
);

export const SubscriptionOut = Type.Object({
  id: Id,
  patient_id: Id,
  plan_id: Id,
  payment_reference: Type.String(),
  credits: Type.Object({ text: Type.Integer(), voice: Type.Integer(), video: Type.Integer() }),
  remaining: Type.Object({ text: Type.Integer(), voice: Type.Integer(), video: Type.Integer() }),
  starts_at: IsoDateTime,
  expires_at: IsoDateTime,
});

export const Balances = Type.Object({ text: Type.Integer(), voice: Type.Integer(), video: Type.Integer() });

export const CreditsOut = Type.Object({
  balances: Balances,
  subscriptions: Type.Array(Type.Intersect([SubscriptionOut, Type.Object({ expired: Type.Boolean() })])),
});

export const NotificationOut = Type.Object({
  id: Id,
  kind: Type.String(),
  payload: Type.Unknown(),
  created_at: IsoDateTime,
  read_at: Type.Union([IsoDateTime, Type.Null()]),
});

export const FlagsOut = Type.Object({
  flags: Type.Object({
    ENFORCE_SESSION_GATED_CHAT: Type.Boolean(),
    ENFORCE_SESSION_GATED_BILLING: Type.Boolean(),
    DISABLE_LEGACY_APPOINTMENT_TRIGGERS: Type.Boolean(),
    ALLOW_LEGACY_APPOINTMENT_CHAT: Type.Boolean(),
  }),
  phase: Type.Integer({ minimum: 1, maximum: 3 }),
  phase_name: Type.String(),
});

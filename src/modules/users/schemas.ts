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

/** One subscription of an imported user (docs/migration.md): the credits it has left. */
export const ImportSubscriptionIn = Type.Object(
  {
    payment_reference: Type.String({ minLength: 1, maxLength: 200 }),
    plan: Type.String({ minLength: 1, maxLength: 100, description: 'the name of a plan' }),
    text_remaining: Type.Integer({ minimum: 0 }),
    voice_remaining: Type.Integer({ minimum: 0 }),
    video_remaining: Type.Integer({ minimum: 0 }),
    starts_at: Type.Optional(Type.String({ maxLength: 64 })),
    expires_at: Type.String({ maxLength: 64 }),
  },
  { additionalProperties: false },
);

export const UpsertUserBody = Type.Object(
  {
    role: RoleSchema,
    name: Type.String({ minLength: 1, maxLength: 200 }),
    country: Type.Optional(Type.Union([Type.String({ maxLength: 100 }), Type.Null()])),
    timezone: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    subscriptions: Type.Optional(Type.Array(ImportSubscriptionIn, { maxItems: 100 })),
  },
  { additionalProperties: false },
);

const SubscriptionImportStatus = Type.Object({
  payment_reference: Type.String(),
  status: Type.Union([Type.Literal('created'), Type.Literal('unchanged'), Type.Literal('skipped_expired')]),
});

export const UpsertUserOut = Type.Object({
  user: UserOut,
  status: Type.Union([Type.Literal('created'), Type.Literal('updated'), Type.Literal('unchanged')]),
  subscriptions: Type.Array(SubscriptionImportStatus),
});

export const ImportUsersBody = Type.Object(
  {
    plans: Type.Optional(Type.Array(Type.Record(Type.String(), Type.Unknown()), { maxItems: 100 })),
    users: Type.Array(Type.Record(Type.String(), Type.Unknown()), {
      maxItems: 1000,
      description: 'export records (docs/migration.md); fields not listed there are ignored',
    }),
    dry_run: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const ImportReportOut = Type.Object({
  dry_run: Type.Boolean(),
  total: Type.Integer(),
  created: Type.Integer(),
  updated: Type.Integer(),
  unchanged: Type.Integer(),
  failed: Type.Integer(),
  rows: Type.Array(
    Type.Object({
      row: Type.Integer(),
      id: Type.Union([Id, Type.Null()]),
      status: Type.Union([Type.Literal('created'), Type.Literal('updated'), Type.Literal('unchanged'), Type.Literal('failed')]),
      subscriptions: Type.Array(SubscriptionImportStatus),
      error: Type.Optional(Type.Object({ error_code: Type.String(), message: Type.String() })),
    }),
  ),
});

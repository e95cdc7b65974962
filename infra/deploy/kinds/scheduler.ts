/**
 * Kind `scheduler-job`: a Cloud Scheduler job that POSTs to an internal function with an OIDC
 * token of the invoker account, for the audience the function checks (`<base>/sweep`,
 * `<base>/bundle`; shared/http/internal-auth.ts). Jobs have no labels: the description carries
 * the mark that says patchbay created it.
 */
import { compareProps, type Kind, last, MARK } from '../model.js';

export interface JobProps {
  schedule: string;
  timeZone: string;
  uri: string;
  serviceAccount: string;
  audience: string;
  attemptDeadline: string;
  description: string;
}

interface Live {
  name: string;
  schedule?: string;
  timeZone?: string;
  description?: string;
  attemptDeadline?: string;
  httpTarget?: { uri?: string; oidcToken?: { serviceAccountEmail?: string; audience?: string } };
}

const flags = (p: JobProps): string[] => [
  `--schedule=${p.schedule}`,
  `--time-zone=${p.timeZone}`,
  `--uri=${p.uri}`,
  '--http-method=post',
  `--oidc-service-account-email=${p.serviceAccount}`,
  `--oidc-token-audience=${p.audience}`,
  `--attempt-deadline=${p.attemptDeadline}`,
  `--description=${p.description}`,
];

export const scheduler: Kind<JobProps> = {
  kind: 'scheduler-job',
  async observe({ gcloud, cfg }) {
    const list = await gcloud.json<Live[]>(['scheduler', 'jobs', 'list', `--location=${cfg.region}`]);
    return new Map(
      list.map((j) => [
        last(j.name),
        {
          schedule: j.schedule ?? '',
          timeZone: j.timeZone ?? '',
          uri: j.httpTarget?.uri ?? '',
          serviceAccount: j.httpTarget?.oidcToken?.serviceAccountEmail ?? '',
          audience: j.httpTarget?.oidcToken?.audience ?? '',
          attemptDeadline: j.attemptDeadline ?? '',
          description: j.description ?? '',
        },
      ]),
    );
  },
  diff: (want, live) => compareProps(want, live),
  create: (ctx, r) => [{ args: ['scheduler', 'jobs', 'create', 'http', r.name, `--location=${ctx.cfg.region}`, ...flags(r.props)] }],
  update: (ctx, r) => [{ args: ['scheduler', 'jobs', 'update', 'http', r.name, `--location=${ctx.cfg.region}`, ...flags(r.props)] }],
  ours: (_ctx, _name, live) => live.description.endsWith(MARK),
  remove: (ctx, name) => [{ args: ['scheduler', 'jobs', 'delete', name, `--location=${ctx.cfg.region}`] }],
};

/**
 * Kind `service-account`: an identity the functions run as or call with. Service accounts have no
 * labels, so the description carries the mark that says patchbay created it (for `--prune`).
 */
import { type Kind, MARK } from '../model.js';

export interface AccountProps {
  displayName: string;
  description: string;
}

interface Live {
  email: string;
  displayName?: string;
  description?: string;
}

export const serviceAccounts: Kind<AccountProps> = {
  kind: 'service-account',
  async observe({ gcloud }) {
    const list = await gcloud.json<Live[]>(['iam', 'service-accounts', 'list']);
    return new Map(list.map((a) => [a.email.split('@')[0] as string, { displayName: a.displayName ?? '', description: a.description ?? '' }]));
  },
  create: (_ctx, r) => [
    {
      args: ['iam', 'service-accounts', 'create', r.name, `--display-name=${r.props.displayName}`, `--description=${r.props.description}`],
    },
  ],
  update: ({ gcloud }, r) => [
    {
      args: [
        'iam',
        'service-accounts',
        'update',
        `${r.name}@${gcloud.project}.iam.gserviceaccount.com`,
        `--display-name=${r.props.displayName}`,
        `--description=${r.props.description}`,
      ],
    },
  ],
  ours: (_ctx, _name, live) => live.description.endsWith(MARK),
  remove: ({ gcloud }, name) => [{ args: ['iam', 'service-accounts', 'delete', `${name}@${gcloud.project}.iam.gserviceaccount.com`] }],
};
